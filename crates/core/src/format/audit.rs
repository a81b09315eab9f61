//! Audit records (`audit/<id>`): one operation an operator (or the daemon) ran on the
//! repository, who ran it and how it ended (`docs/FORMAT.md` §18). Framed by
//! [`super::object`] with magic `LBAU`, named by the hash of their bytes; the payload is
//! compact UTF-8 JSON of one [`AuditEvent`], at most [`MAX_AUDIT_PAYLOAD`] bytes.
//!
//! The same JSON, one event per line, is what `audit.log` in the state directory holds. A
//! record is history, not a proof: anyone with the password can write one, so readers treat
//! every field as untrusted text (bounded, checked, escaped before it reaches a terminal).
use serde::{Deserialize, Serialize};

use crate::error::{err, Result};
use crate::id::ObjectId;

/// Audit record magic.
pub const AUDIT_MAGIC: &[u8; 4] = b"LBAU";
/// Largest payload a reader decompresses; the stored object is at most this size too
/// (`ObjectKind::max_size`). [`AuditEvent::bounded`] keeps a writer's payload under a third
/// of it.
pub const MAX_AUDIT_PAYLOAD: usize = 64 << 10;
/// `result` of an operation that did what it was asked.
pub const RESULT_OK: &str = "ok";
/// `result` of an operation that failed (`message` says why).
pub const RESULT_FAILED: &str = "failed";
/// Most point ids one event lists (a forget may remove hundreds); `more_points` counts the
/// rest.
pub const MAX_POINTS: usize = 128;
/// Longest `message`, in characters.
pub const MAX_MESSAGE: usize = 2000;
/// Longest of the short text fields (`host`, `user`, `sudo_user`, `command`, `app`,
/// `destination`, `lifeboat_version`), in characters.
pub const MAX_FIELD: usize = 256;

/// One operation, as the audit log keeps it. Never holds a secret: no password, no
/// environment, no command line (only the operation's name and its outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the operation ended (RFC 3339 UTC, milliseconds).
    pub time: String,
    /// Host it ran on.
    pub host: String,
    /// Name of the real user that ran it (`uid N` when the uid has no name).
    pub user: String,
    /// That user's uid.
    pub uid: u32,
    /// Under `sudo`, the user `SUDO_USER` names: what sudo says, informational only (anyone
    /// can set the variable; it is never used to decide anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// The operation: `backup`, `restore`, `rollback`, `drill`, `forget`, `prune`, `copy`,
    /// `key add`, `key remove`.
    pub command: String,
    /// The app, when the operation is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The points it wrote, restored, drilled or removed (hex ids), at most [`MAX_POINTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<String>,
    /// How many more points there were than `points` lists.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_points: u64,
    /// [`RESULT_OK`] or [`RESULT_FAILED`].
    pub result: String,
    /// One line: what it did, or the error when it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Bytes the operation added, restored, copied or freed, when it knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The repository (its location as lifeboat prints it), or the copy's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// `CARGO_PKG_VERSION` of the writer.
    pub lifeboat_version: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `s` cut to about `max` characters (at most `max + 3`; a cut one ends in `...`), control characters written as
/// `\xNN` so an event is one line wherever it goes.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut n = 0;
    for c in s.chars() {
        if n >= max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
            n += 4;
        } else {
            out.push(c);
            n += 1;
        }
    }
    out
}

impl AuditEvent {
    /// The event with every field within its bound ([`MAX_POINTS`], [`MAX_MESSAGE`],
    /// [`MAX_FIELD`]) and free of control characters: what writers store, so its JSON is one
    /// line of at most ~24 KiB.
    pub fn bounded(mut self) -> AuditEvent {
        for f in [
            &mut self.time,
            &mut self.host,
            &mut self.user,
            &mut self.command,
            &mut self.result,
            &mut self.lifeboat_version,
        ] {
            *f = clean(f, MAX_FIELD);
        }
        for f in [&mut self.sudo_user, &mut self.app, &mut self.destination]
            .into_iter()
            .flatten()
        {
            *f = clean(f, MAX_FIELD);
        }
        self.message = clean(&self.message, MAX_MESSAGE);
        if self.points.len() > MAX_POINTS {
            self.more_points += (self.points.len() - MAX_POINTS) as u64;
            self.points.truncate(MAX_POINTS);
        }
        for p in &mut self.points {
            *p = clean(p, 64);
        }
        self
    }

    /// The compact JSON of the event (no newline).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("audit event serialises")
    }

    /// Decodes one event (a record's payload, or one line of `audit.log`) as untrusted: the
    /// JSON must parse, `time` be a timestamp, `result` one of the two words, every point a
    /// 64-char hex id and the text fields within twice their writer's bound. Anything else
    /// is `Corrupt`.
    pub fn decode(b: &[u8], what: &str) -> Result<AuditEvent> {
        if b.len() > MAX_AUDIT_PAYLOAD {
            return Err(err!(Corrupt, "{what}: audit event larger than 64 KiB"));
        }
        let e: AuditEvent =
            serde_json::from_slice(b).map_err(|e| err!(Corrupt, "{what}: bad audit event: {e}"))?;
        let bad = |why: &str| err!(Corrupt, "{what}: bad audit event: {why}");
        if e.time.parse::<jiff::Timestamp>().is_err() {
            return Err(bad("time is not a timestamp"));
        }
        if e.result != RESULT_OK && e.result != RESULT_FAILED {
            return Err(bad("result is neither ok nor failed"));
        }
        if e.points.len() > MAX_POINTS || e.points.iter().any(|p| ObjectId::from_hex(p).is_none()) {
            return Err(bad("points are not ids"));
        }
        let long = |s: &str, max: usize| s.chars().count() > 2 * max + 3;
        let fields = [
            e.host.as_str(),
            &e.user,
            &e.command,
            &e.lifeboat_version,
            e.sudo_user.as_deref().unwrap_or(""),
            e.app.as_deref().unwrap_or(""),
            e.destination.as_deref().unwrap_or(""),
        ];
        if fields.iter().any(|f| long(f, MAX_FIELD)) || long(&e.message, MAX_MESSAGE) {
            return Err(bad("a text field is too long"));
        }
        Ok(e)
    }

    /// The time as a timestamp (checked by [`AuditEvent::decode`]).
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event() -> AuditEvent {
        AuditEvent {
            time: "2026-12-03T10:00:00.123Z".into(),
            host: "h".into(),
            user: "alice".into(),
            uid: 1000,
            sudo_user: None,
            command: "backup".into(),
            app: Some("chat".into()),
            points: vec!["ab".repeat(32)],
            more_points: 0,
            result: RESULT_OK.into(),
            message: "point abababab".into(),
            bytes: Some(42),
            duration_ms: Some(7),
            destination: Some("/backup/lb".into()),
            lifeboat_version: "0.1.0".into(),
        }
    }

    #[test]
    fn decodes_what_it_encodes_and_refuses_what_is_not_an_event() {
        let e = event();
        assert_eq!(AuditEvent::decode(&e.encode(), "audit x").unwrap(), e);
        for bad in [
            AuditEvent {
                result: "maybe".into(),
                ..event()
            },
            AuditEvent {
                time: "yesterday".into(),
                ..event()
            },
            AuditEvent {
                points: vec!["../x".into()],
                ..event()
            },
            AuditEvent {
                host: "h".repeat(2 * MAX_FIELD + 10),
                ..event()
            },
        ] {
            let err = AuditEvent::decode(&bad.encode(), "audit x").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{bad:?}");
        }
        let err = AuditEvent::decode(b"[1,2]", "audit x").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    }

    /// A writer's event is one line within bounds, whatever the operation handed it: a
    /// message with newlines and escapes, hundreds of points.
    #[test]
    fn bounded_events_are_one_short_line() {
        let e = AuditEvent {
            message: format!("first\nsecond\x1b[31m{}", "x".repeat(10_000)),
            points: (0..500u32)
                .map(|i| ObjectId::of(&i.to_le_bytes()).to_hex())
                .collect(),
            host: "h\r".into(),
            ..event()
        }
        .bounded();
        assert_eq!(e.points.len(), MAX_POINTS);
        assert_eq!(e.more_points, 500 - MAX_POINTS as u64);
        assert_eq!(e.host, "h\\x0d");
        let json = e.encode();
        assert!(!json.contains(&b'\n'));
        assert!(json.len() < MAX_AUDIT_PAYLOAD / 2, "{}", json.len());
        assert!(e.message.starts_with("first\\x0asecond\\x1b[31m"));
        assert_eq!(AuditEvent::decode(&json, "audit x").unwrap(), e);
    }
}
