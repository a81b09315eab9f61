#!/usr/bin/env python3
"""Tables for bench/continuous.sh: python3 continuous_report.py /tmp/lbbench/cont [--json]

Reads <dir>/<variant>/{result.tsv, lat.txt, sample.wal.tsv, sample.files.tsv, mutate.json} for
the variants none, litestream and lifeboat (whichever exist) and prints markdown: one row per
measure, one column per variant, and lifeboat/litestream ratios against issue 14's targets.
"""
import collections
import json
import os
import sys

MiB = 1024 * 1024


def load_kv(path):
    d = {}
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.rstrip("\n").partition(" ")
            d[k] = v
    return d


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def variant(dirpath):
    r = load_kv(os.path.join(dirpath, "result.tsv"))
    if not r:
        return None
    m = {"variant": r.get("variant"), "version": r.get("version", "")}
    f = lambda k: float(r[k]) if k in r else None  # noqa: E731
    lat_tot, lat_com = [], []
    lp = os.path.join(dirpath, "lat.txt")
    if os.path.exists(lp):
        for line in open(lp):
            a, b = line.split()
            lat_tot.append(int(a))
            lat_com.append(int(b))
    lat_tot.sort()
    lat_com.sort()
    m["transactions"] = len(lat_tot)
    for name, vals in (("tx", lat_tot), ("commit", lat_com)):
        m[name + "_p50_us"] = pct(vals, 50)
        m[name + "_p99_us"] = pct(vals, 99)
        m[name + "_p999_us"] = pct(vals, 99.9)
        m[name + "_max_us"] = vals[-1] if vals else None
        m[name + "_mean_us"] = round(sum(vals) / len(vals), 1) if vals else None
    t0, t_end = f("t_day0"), f("t_day_end")
    t1 = f("t_day1") or t_end
    m["day_wall_s"] = round(t_end - t0, 1) if t0 and t_end else None
    # WAL: maximum size seen while the day's writes ran (the size at t0 counts: it persists)
    wal_max, wal_max_all, cur = 0, 0, 0
    wp = os.path.join(dirpath, "sample.wal.tsv")
    if os.path.exists(wp):
        for line in open(wp):
            t, s = line.split()
            t, s = float(t), int(s)
            wal_max_all = max(wal_max_all, s)
            if t <= t0:
                cur = s
            elif t <= t_end:
                wal_max = max(wal_max, s)
        wal_max = max(wal_max, cur)
    m["wal_max_day_bytes"] = wal_max
    m["wal_max_life_bytes"] = wal_max_all
    # Objects (files) created in windows, from the sampler's first-seen times
    files = []
    fp = os.path.join(dirpath, "sample.files.tsv")
    if os.path.exists(fp):
        for line in open(fp):
            t, s, p = line.rstrip("\n").split(" ", 2)
            files.append((float(t), int(s), p))

    def created(a, b):
        c = collections.Counter()
        for t, _s, p in files:
            if a < t <= b:
                parts = p.split("/")
                c["/".join(parts[:2]) if parts[0] == "ltx" and len(parts) > 2 else parts[0]] += 1
        return c

    if "day0_bytes" in r:
        m["startup_s"] = round(f("startup_s"), 1)
        m["initial_bytes"] = int(r["day0_bytes"])
        m["day_bytes"] = int(r["day1_bytes"]) - int(r["day0_bytes"])
        m["day1_bytes"] = int(r["day1_bytes"])
        m["restart_bytes"] = int(r["restart1_bytes"]) - int(r["day1_bytes"])
        m["idle_bytes"] = int(r["idle1_bytes"]) - int(r["restart1_bytes"])
        m["cpu_startup_s"] = f("day0_cpu")
        m["cpu_day_s"] = round(f("day1_cpu") - f("day0_cpu"), 2)
        m["cpu_life1_s"] = f("day1_cpu")
        m["cpu_restart_s"] = f("restart_cpu")
        m["cpu_idle_s"] = round(f("idle_cpu") - f("restart_cpu"), 2)
        m["cpu_total_s"] = round(f("day1_cpu") + f("idle_cpu"), 2)
        m["hwm_startup_mib"] = round(f("day0_hwm_kb") / 1024, 1)
        m["hwm_life1_mib"] = round(f("life1_hwm_kb") / 1024, 1)
        m["hwm_restart_mib"] = round(f("restart_hwm_kb") / 1024, 1)
        day = created(t0, t1 + 0.6)
        m["day_objects"] = dict(day)
        m["day_objects_total"] = sum(day.values())
        m["day_window_s"] = round(t1 - t0, 1)
        m["objects_per_busy_hour"] = round(sum(day.values()) * 3600.0 / (t1 - t0))
        if "day_objects_find" in r:
            m["day_objects_find"] = int(r["day_objects_find"])
        m["restart_objects"] = dict(created(f("t_restart"), f("t_idle0")))
        idle = created(f("t_idle0"), f("t_idle1"))
        m["idle_objects"] = sum(idle.values())
        m["idle_new_files_find"] = int(r["idle_new_files"])
        m["idle_window_s"] = round(f("t_idle1") - f("t_idle0"), 1)
        if "local_state_bytes" in r:
            m["local_state_bytes"] = int(r["local_state_bytes"])
    if "restore_time" in r:
        w, u, s, rss, rc = r["restore_time"].split()
        m["restore_wall_s"] = float(w)
        m["restore_cpu_s"] = round(float(u) + float(s), 2)
        m["restore_rss_mib"] = round(int(rss) / 1024, 1)
        m["restore_rc"] = int(rc)
        m["verify"] = r.get("verify")
    for key, name in (("restore_quick_time", "restore_quick"), ("drill_time", "drill")):
        if key in r:
            w, u, s, rss, rc = r[key].split()
            m[name + "_wall_s"] = float(w)
            m[name + "_cpu_s"] = round(float(u) + float(s), 2)
            m[name + "_rss_mib"] = round(int(rss) / 1024, 1)
    m["verify_quick"] = r.get("verify_quick")
    m["drill_ok"] = r.get("drill_ok")
    m["T"] = r.get("T")
    mj = os.path.join(dirpath, "mutate.json")
    if os.path.exists(mj):
        j = json.load(open(mj))
        m["mid"] = j.get("mid")
        m["commits"] = j["stats"].get("commits")
        m["wal_after_bytes"] = j.get("wal_bytes_after")
    return m


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lbbench/cont"
    vs = {}
    for v in ("none", "litestream", "lifeboat"):
        m = variant(os.path.join(root, v))
        if m:
            vs[v] = m
    if "--json" in sys.argv:
        print(json.dumps(vs, indent=1))
        return
    mach = load_kv(os.path.join(root, "machine.tsv"))
    print("Machine: %s, %s vCPUs, %.0f GiB RAM, kernel %s, SQLite %s; %s UTC; day paced over %s s; interval %s"
          % (mach.get("cpu"), mach.get("cpus"), int(mach.get("mem_kb", 0)) / 1024 / 1024, mach.get("kernel"),
             mach.get("sqlite"), mach.get("date"), mach.get("duration"), mach.get("interval")))
    print()
    print("Versions: " + "; ".join("%s: %s" % (k, v["version"]) for k, v in vs.items() if v["version"]))
    print()
    cols = list(vs)
    print("| measure | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))

    def row(label, fn):
        cells = []
        for c in cols:
            try:
                x = fn(vs[c])
            except (KeyError, TypeError):
                x = None
            cells.append("" if x is None else str(x))
        print("| %s | %s |" % (label, " | ".join(cells)))

    mib = lambda b: "%.1f" % (b / MiB)  # noqa: E731
    row("transactions (commits timed)", lambda m: m["transactions"])
    row("wall time of the day's writes, s", lambda m: m["day_wall_s"])
    row("tx latency p50, us", lambda m: m["tx_p50_us"])
    row("tx latency p99, us", lambda m: m["tx_p99_us"])
    row("tx latency p99.9, us", lambda m: m["tx_p999_us"])
    row("tx latency max, us", lambda m: m["tx_max_us"])
    row("tx latency mean, us", lambda m: m["tx_mean_us"])
    row("COMMIT alone p50 / p99, us", lambda m: "%d / %d" % (m["commit_p50_us"], m["commit_p99_us"]))
    row("max WAL during the day, MiB", lambda m: mib(m["wal_max_day_bytes"]))
    row("startup to first copy (quiet), s", lambda m: m["startup_s"])
    row("initial copy in replica, MiB", lambda m: mib(m["initial_bytes"]))
    row("**replica growth during the day, MiB**", lambda m: mib(m["day_bytes"]))
    row("daemon CPU: startup (initial copy), s", lambda m: m["cpu_startup_s"])
    row("**daemon CPU: the day, s**", lambda m: m["cpu_day_s"])
    row("daemon CPU: first life (startup + day), s", lambda m: m["cpu_life1_s"])
    row("daemon CPU: restart until quiet, s", lambda m: m["cpu_restart_s"])
    row("daemon CPU: idle window, s", lambda m: m["cpu_idle_s"])
    row("**daemon peak RSS (VmHWM), MiB** first life / restarted", lambda m: "%s / %s" % (m["hwm_life1_mib"], m["hwm_restart_mib"]))
    row("**restart: bytes added, MiB**", lambda m: mib(m["restart_bytes"]))
    row("restart: objects created", lambda m: json.dumps(m["restart_objects"]))
    row("objects created during the day (by top dir)", lambda m: json.dumps(m["day_objects"]))
    row("objects per busy hour (day's count x 3600 / window)", lambda m: m["objects_per_busy_hour"])
    row("idle window: objects created / bytes added", lambda m: "%d in %s s / %d" % (m["idle_objects"], m["idle_window_s"], m["idle_bytes"]))
    row("restore to T: wall s (CPU s, RSS MiB)", lambda m: "%.2f (%.2f, %.0f)" % (m["restore_wall_s"], m["restore_cpu_s"], m["restore_rss_mib"]))
    row("restore = .backup at T (verify.py)", lambda m: m["verify"])
    row("restore to T --verify quick: wall s (CPU s, RSS MiB); = .backup", lambda m: "%.2f (%.2f, %.0f); %s" % (
        m["restore_quick_wall_s"], m["restore_quick_cpu_s"], m["restore_quick_rss_mib"], m["verify_quick"]))
    row("drill of the newest point: wall s (CPU s, RSS MiB), passed", lambda m: "%.2f (%.2f, %.0f), %s" % (
        m["drill_wall_s"], m["drill_cpu_s"], m["drill_rss_mib"], m["drill_ok"]))
    row("local state beside the DB, MiB", lambda m: mib(m["local_state_bytes"]))
    print()
    if "litestream" in vs and "lifeboat" in vs:
        L, B, N = vs["litestream"], vs["lifeboat"], vs.get("none")
        print("| target (issue 14) | lifeboat | litestream | ratio | target | met |")
        print("|---|---|---|---|---|---|")

        def t(label, b, l, limit, fmt="%.1f"):
            if l <= 0 or b < 0:
                # Not a measurement (a replica that shrank over the day: Litestream's
                # compaction deleting files counted in its first copy).
                print("| %s | %s | %s | n/a | <= %.2fx | not measured |" % (label, fmt % b, fmt % l, limit))
                return
            ratio = b / l
            print("| %s | %s | %s | %.2fx | <= %.2fx | %s |" % (label, fmt % b, fmt % l, ratio, limit,
                                                             "yes" if ratio <= limit else "**no**"))

        t("bytes stored for the day, MiB", B["day_bytes"] / MiB, L["day_bytes"] / MiB, 0.5)
        t("replica size after the day (first copy + day), MiB", B["day1_bytes"] / MiB, L["day1_bytes"] / MiB, 0.5)
        t("daemon CPU during the day, s", B["cpu_day_s"], L["cpu_day_s"], 0.5, "%.2f")
        t("daemon CPU over the first life (startup + day), s", B["cpu_life1_s"], L["cpu_life1_s"], 0.5, "%.2f")
        t("restore to the middle of the day, s", B["restore_wall_s"], L["restore_wall_s"], 0.3, "%.2f")
        if "restore_quick_wall_s" in B:
            t("restore to the middle of the day, --verify quick, s", B["restore_quick_wall_s"], L["restore_wall_s"], 0.3, "%.2f")
        hwm = max(B["hwm_life1_mib"], B["hwm_restart_mib"])
        print("| peak RSS, MiB | %.1f | %.1f | | <= 100 MiB | %s |" % (
            hwm, max(L["hwm_life1_mib"], L["hwm_restart_mib"]), "yes" if hwm <= 100 else "**no**"))
        print("| restart adds, MiB | %.2f | %.1f | | < 1 MiB | %s |" % (
            B["restart_bytes"] / MiB, L["restart_bytes"] / MiB, "yes" if B["restart_bytes"] < MiB else "**no**"))
        print("| idle %s s: objects created | %d | %d | | 0 | %s |" % (
            B["idle_window_s"], B["idle_objects"], L["idle_objects"], "yes" if B["idle_objects"] == 0 else "**no**"))
        print("| restore equal to .backup at T | %s | %s | | equal | %s |" % (
            B["verify"], L["verify"], "yes" if B["verify"] == "ok" else "**no**"))
        if N:
            for k, lab in (("tx_p50_us", "p50"), ("tx_p99_us", "p99")):
                rb, rl = B[k] / N[k], L[k] / N[k]
                print("| app tx latency %s vs no daemon, us | %d (%.3fx) | %d (%.3fx) | none: %d | <= 1.05x | %s |" % (
                    lab, B[k], rb, L[k], rl, N[k], "yes" if rb <= 1.05 else "**no**"))


if __name__ == "__main__":
    main()
