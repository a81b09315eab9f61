//! Numbers for people: sizes and durations as every front end shows them.

/// 1536 -> "1.5 KiB".
pub fn size(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Milliseconds -> "850 ms", "3.2 s", "4 min 05 s".
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// An age or a period: "45 s", "12 min", "5 h 03 min", "3 d 4 h" (a negative one counts as 0).
pub fn age(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        5400..=172_799 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `s` on one line: every control character (a newline above all) shown as `\xHH`, so a
/// value can never start a line of its own in a log, a generated systemd unit or a crontab.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_units() {
        assert_eq!(super::size(512), "512 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(super::duration_ms(850), "850 ms");
        assert_eq!(super::duration_ms(3200), "3.2 s");
        assert_eq!(super::duration_ms(245_000), "4 min 05 s");
        let age = |s| super::age(jiff::SignedDuration::from_secs(s));
        assert_eq!(age(-5), "0 s");
        assert_eq!(age(45), "45 s");
        assert_eq!(age(720), "12 min");
        assert_eq!(age(5 * 3600 + 180), "5 h 03 min");
        assert_eq!(age(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
