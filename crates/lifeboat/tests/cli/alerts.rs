//! Issue 15 items 3-5: alerts to a real local HTTP listener (webhooks in each format,
//! heartbeats, retries), the anomaly rules each raised once and recovered once, and the
//! Prometheus metrics of `lifeboat run` and `lifeboat metrics` parsed by the reference
//! parser (Python's prometheus_client, which `scripts/test.sh` installs).
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{lb_config, make_db, service_var, Env};
use crate::daemon::Daemon;

/// One request the listener received.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A local HTTP server that records every request and answers 200, except 500 to the first
/// `fail_first` requests to `/hook` (to prove deliveries are retried).
struct Listener {
    url: String,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Listener {
    fn start(fail_first: usize) -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&reqs);
        let mut failed = 0;
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let Some(req) = read_request(&mut s) else {
                    continue;
                };
                let fail = req.path == "/hook" && failed < fail_first;
                if fail {
                    failed += 1;
                } else {
                    r.lock().unwrap().push(req);
                }
                let status = if fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Listener { url, reqs }
    }

    fn to(&self, path: &str) -> Vec<Req> {
        self.reqs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The (event, app, rule) of every JSON webhook message so far.
    fn events(&self) -> Vec<(String, String, String)> {
        self.to("/hook")
            .iter()
            .map(|r| {
                let v = r.json();
                (
                    v["event"].as_str().unwrap_or("?").to_string(),
                    v["app"].as_str().unwrap_or("?").to_string(),
                    v["rule"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    }

    fn wait_for(&self, what: &str, secs: u64, cond: impl Fn(&Listener) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; received: {:#?}",
            self.reqs.lock().unwrap()
        );
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<Req> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// GET `url` (plain HTTP on loopback) with an optional bearer token: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // axum answers small bodies whole (Content-Length), never chunked for a String.
    (status, body.to_string())
}

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    family_type: String,
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

/// Parses exposition text with prometheus_client's parser (the reference implementation);
/// `None` when the run opted out of services.
fn parse_metrics(text: &str) -> Option<Vec<Sample>> {
    let py = service_var("LIFEBOAT_TEST_PROM_PY", "python3 with prometheus_client")?;
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append({"type": f.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let samples: Vec<Sample> = v
        .into_iter()
        .map(|s| Sample {
            family_type: s["type"].as_str().unwrap().to_string(),
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"].as_object().unwrap().clone(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect();
    // Typed right and named by the conventions: counters end in _total, nothing untyped.
    for s in &samples {
        assert!(
            s.family_type == "gauge" || s.family_type == "counter",
            "{s:?} is untyped"
        );
        assert_eq!(
            s.family_type == "counter",
            s.name.ends_with("_total"),
            "{s:?}: only counters end in _total"
        );
        assert!(s.name.starts_with("lifeboat_"), "{s:?}");
    }
    Some(samples)
}

/// The value of `name` with every label of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .map(|s| s.value)
}

/// The address `lifeboat run` logged it serves /metrics on.
fn metrics_addr(d: &mut Daemon) -> String {
    d.wait_for("/metrics to be served", 30, |d| {
        d.log().contains("serving /metrics on")
    });
    let log = d.log();
    let at = log.find("serving /metrics on http://").unwrap() + "serving /metrics on http://".len();
    log[at..].split('/').next().unwrap().to_string()
}

/// Scrapes and parses once the watcher's first report exists.
fn scrape(addr: &str) -> Option<Vec<Sample>> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = get(addr, "/metrics", None);
        if code == 200 {
            return parse_metrics(&body);
        }
        assert!(Instant::now() < end, "/metrics answered {code}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status_code(cfg: &Path, dir: &Path, notify: bool) -> (i32, String) {
    let mut c = lb_config(cfg, dir);
    c.arg("status");
    if notify {
        c.arg("--notify");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn init_repo(cfg: &Path, dir: &Path) {
    lb_config(cfg, dir)
        .args(["init", "--kdf-memory-mib", "8"])
        .assert()
        .success();
}

fn backup(cfg: &Path, dir: &Path, app: &str) {
    lb_config(cfg, dir).args(["backup", app]).assert().success();
}

/// Must show (issue 15): a point damaged in the store fails the next scheduled drill; the
/// webhook hears of it once (after two refused deliveries: retried), in JSON and in ntfy's
/// format, the heartbeat gets `/fail`, `status` exits 12 and `/metrics` shows the failure; a
/// new backup of the app (the repair) clears it with a recovery message and the next drill
/// passes.
#[test]
fn a_damaged_point_fails_its_drill_alerts_and_a_new_backup_clears_it() {
    let env = Env::new();
    let hooks = Listener::start(2);
    let db = env.path("chat/chat.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    make_db(&db, 800, 200);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{repo}\"\n\
             [app.chat]\nsqlite = [\"{db}\"]\ndrill = \"every 2s\"\n\
             [daemon]\nstate_file = \"{dir}/state/daemon.json\"\nretry = \"1s\"\nscratch_dir = \"{dir}\"\nlisten = \"127.0.0.1:0\"\n\
             [alerts]\nheartbeat = \"{url}/hb\"\nevery = \"1s\"\nretry = \"100ms\"\n\
             [[alerts.webhook]]\nurl = \"{url}/hook\"\n\
             [[alerts.webhook]]\nurl = \"{url}/ntfy\"\nformat = \"ntfy\"\n",
            repo = env.path("repo").display(),
            db = db.display(),
            dir = env.dir.path().display(),
            url = hooks.url,
        ),
    )
    .unwrap();
    init_repo(&cfg, env.dir.path());
    backup(&cfg, env.dir.path(), "chat");
    let mut d = Daemon::start(&env, &cfg, "alerts");
    let addr = metrics_addr(&mut d);
    d.wait_for("a passed drill", 60, |d| {
        d.count(&["job ok", "drilled: every check passed"]) >= 1
    });
    hooks.wait_for("a heartbeat", 30, |l| !l.to("/hb").is_empty());
    assert!(hooks.to("/hb")[0].body.starts_with("chat drill: point"));
    let m = {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let Some(m) = scrape(&addr) else { return };
            if value(&m, "lifeboat_last_drill_success", &[("app", "chat")]).is_some() {
                break m;
            }
            assert!(Instant::now() < end, "no drill in the metrics: {m:#?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    assert_eq!(
        value(&m, "lifeboat_last_drill_success", &[("app", "chat")]),
        Some(1.0)
    );
    assert!(value(&m, "lifeboat_last_drill_rto_seconds", &[("app", "chat")]).unwrap() > 0.0);
    assert!(
        value(
            &m,
            "lifeboat_job_runs_total",
            &[("app", "chat"), ("job", "drill")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &m,
            "lifeboat_last_success_timestamp_seconds",
            &[("job", "drill")]
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        value(&m, "lifeboat_destination_up", &[("role", "repository")]),
        Some(1.0)
    );
    assert!(
        value(
            &m,
            "lifeboat_storage_requests_total",
            &[("job", "drill"), ("type", "get")]
        )
        .unwrap()
            > 0.0
    );
    assert!(hooks.events().is_empty(), "{:?}", hooks.events());

    for p in env.packs() {
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    }
    hooks.wait_for("the drill_failed alert", 60, |l| {
        l.events()
            .contains(&("alert".into(), "chat".into(), "drill_failed".into()))
    });
    let alert = hooks
        .to("/hook")
        .into_iter()
        .find(|r| r.json()["rule"] == "drill_failed")
        .unwrap();
    assert!(
        alert.json()["message"].as_str().unwrap().contains("failed"),
        "{alert:?}"
    );
    hooks.wait_for("the ntfy alert", 30, |l| {
        l.to("/ntfy")
            .iter()
            .any(|r| r.body.starts_with("[ALERT] chat"))
    });
    let ntfy = hooks.to("/ntfy");
    assert_eq!(ntfy[0].header("Priority"), Some("high"));
    assert!(ntfy[0].header("Title").unwrap().contains("chat"));
    hooks.wait_for("a failure heartbeat", 30, |l| !l.to("/hb/fail").is_empty());
    let (code, out) = status_code(&cfg, env.dir.path(), false);
    assert_eq!(code, 12, "{out}");
    assert!(
        out.contains("the newest drill") && out.contains("failed"),
        "{out}"
    );
    let Some(m) = scrape(&addr) else { return };
    assert_eq!(
        value(&m, "lifeboat_last_drill_success", &[("app", "chat")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "lifeboat_problem",
            &[("app", "chat"), ("rule", "drill_failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "lifeboat_app_healthy", &[("app", "chat")]),
        Some(0.0)
    );
    assert!(value(&m, "lifeboat_job_failures_total", &[("job", "drill")]).unwrap() >= 1.0);

    // The repair: a new point whose pages share nothing with the damaged packs. (Backup
    // deduplication trusts the index, so a page still stored there would be referenced
    // again, and the same database rebuilt has the same first pages: issue 16's repair
    // re-stores those. Another page size makes every page new.)
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA page_size = 8192; CREATE TABLE rebuilt(x);")
        .unwrap();
    make_db(&db, 600, 333);
    backup(&cfg, env.dir.path(), "chat");
    hooks.wait_for("the recovery", 60, |l| {
        l.events()
            .contains(&("recovered".into(), "chat".into(), "drill_failed".into()))
    });
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out) = status_code(&cfg, env.dir.path(), false);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < end, "status stays unhealthy: {out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Once each, however many drills failed meanwhile; the two refused deliveries were retried.
    let failed_alerts = hooks
        .events()
        .iter()
        .filter(|e| e.0 == "alert" && e.2 == "drill_failed")
        .count();
    assert_eq!(failed_alerts, 1, "{:?}", hooks.events());
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
}

/// Each anomaly rule with the listener, through `status --notify` (what a cron or systemd
/// timer setup runs; the daemon announces through the same function): raised once, and a
/// recovery when a newer point no longer shows it. Rows: `DELETE FROM messages`; size: a
/// large upload deleted; secret: its content changed (a touch is not a change); stale and
/// overdue drill: two slots of their schedules passed.
#[test]
fn each_anomaly_rule_alerts_once_and_recovers_once() {
    let env = Env::new();
    let hooks = Listener::start(0);
    let dir = env.dir.path();
    let db = env.path("chat/chat.db");
    let uploads = env.path("chat/uploads");
    let key = env.path("chat/jwt.key");
    std::fs::create_dir_all(&uploads).unwrap();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE messages(id INTEGER PRIMARY KEY, body TEXT);\
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)\
             INSERT INTO messages(body) SELECT 'hello ' || i FROM n;",
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(uploads.join("video.bin"), &big).unwrap();
    std::fs::write(&key, b"secret-one").unwrap();
    let bot_db = env.path("bot/bot.db");
    std::fs::create_dir_all(bot_db.parent().unwrap()).unwrap();
    make_db(&bot_db, 50, 100);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{repo}\"\n\
             [app.chat]\nsqlite = [\"{db}\"]\nfiles = [\"{uploads}\"]\nsecrets = [\"{key}\"]\n\
             [app.bot]\nsqlite = [\"{bot}\"]\nschedule = \"every 1s\"\ndrill = \"every 1s\"\n\
             [daemon]\nstate_file = \"{dir}/state/daemon.json\"\nscratch_dir = \"{dir}\"\n\
             [alerts]\ngrace = \"5s\"\nretry = \"100ms\"\n\
             [[alerts.webhook]]\nurl = \"{url}/hook\"\n",
            repo = env.path("repo").display(),
            db = db.display(),
            uploads = uploads.display(),
            key = key.display(),
            bot = bot_db.display(),
            dir = dir.display(),
            url = hooks.url,
        ),
    )
    .unwrap();
    init_repo(&cfg, dir);
    let drill_bot = || {
        lb_config(&cfg, dir)
            .args(["drill", "bot"])
            .assert()
            .success();
    };
    // What the listener got since the last look, as (event, app, rule).
    let seen = std::cell::Cell::new(0usize);
    let notify = |want_code: i32| -> Vec<(String, String, String)> {
        let (code, out) = status_code(&cfg, dir, true);
        assert_eq!(code, want_code, "{out}");
        let all = hooks.events();
        let new = all[seen.get()..].to_vec();
        seen.set(all.len());
        new
    };
    let ev = |e: &str, app: &str, rule: &str| (e.to_string(), app.to_string(), rule.to_string());
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(0), []);

    // Rows: every message deleted (the file keeps its size: only this rule fires).
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM messages", ())
        .unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    let got = notify(12);
    assert_eq!(got, [ev("alert", "chat", "rows_drop")]);
    let body = hooks.to("/hook").last().unwrap().json();
    assert!(
        body["key"].as_str().unwrap().ends_with(":messages"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("from 500 to 0"),
        "{body}"
    );
    // Once: the next look, still open, sends nothing.
    assert_eq!(notify(12), []);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)\
             INSERT INTO messages(body) SELECT 'again ' || i FROM n;",
        )
        .unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(0), [ev("recovered", "chat", "rows_drop")]);

    // Secret: touched only (no alert), then its content changed (alert), then unchanged.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&key)
        .unwrap()
        .set_modified(later)
        .unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(0), []);
    std::fs::write(&key, b"secret-two").unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(12), [ev("alert", "chat", "secret_changed")]);
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(0), [ev("recovered", "chat", "secret_changed")]);

    // Size: the large upload deleted; below 50% of the average of the points before.
    std::fs::remove_file(uploads.join("video.bin")).unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(12), [ev("alert", "chat", "size_drop")]);
    std::fs::write(uploads.join("video.bin"), &big).unwrap();
    backup(&cfg, dir, "chat");
    backup(&cfg, dir, "bot");
    drill_bot();
    assert_eq!(notify(0), [ev("recovered", "chat", "size_drop")]);

    // Stale and overdue: bot's schedules are every second with a grace of 5 s; nothing runs.
    std::thread::sleep(Duration::from_secs(9));
    let mut got = notify(12);
    got.sort();
    assert_eq!(
        got,
        [
            ev("alert", "bot", "drill_overdue"),
            ev("alert", "bot", "stale")
        ]
    );
    backup(&cfg, dir, "bot");
    drill_bot();
    let mut got = notify(0);
    got.sort();
    assert_eq!(
        got,
        [
            ev("recovered", "bot", "drill_overdue"),
            ev("recovered", "bot", "stale")
        ]
    );

    // The textfile collector's file: the same metrics, parsed by the reference parser.
    let prom = env.path("lifeboat.prom");
    lb_config(&cfg, dir)
        .args(["metrics", "--textfile"])
        .arg(&prom)
        .assert()
        .success();
    if let Some(m) = parse_metrics(&std::fs::read_to_string(&prom).unwrap()) {
        assert_eq!(
            value(&m, "lifeboat_app_healthy", &[("app", "chat")]),
            Some(1.0)
        );
        assert!(
            value(
                &m,
                "lifeboat_points",
                &[("app", "chat"), ("role", "repository")]
            )
            .unwrap()
                >= 9.0
        );
        assert_eq!(
            value(&m, "lifeboat_last_drill_success", &[("app", "bot")]),
            Some(1.0)
        );
    }
}

/// `/metrics` off loopback needs a token; with one set, a request without it is refused.
#[test]
fn metrics_need_a_token_off_loopback_and_check_it_when_set() {
    let env = Env::new();
    let cfg = env.path("lifeboat.toml");
    let base = format!(
        "[repository.main]\npath = \"{}\"\n[daemon]\nstate_file = \"{}/state/daemon.json\"\n",
        env.path("repo").display(),
        env.dir.path().display()
    );
    std::fs::write(&cfg, format!("{base}listen = \"0.0.0.0:0\"\n")).unwrap();
    let out = lb_config(&cfg, env.dir.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_token_file"));
    let token = "an-unguessable-test-token-0123456789";
    std::fs::write(env.path("token"), format!("{token}\n")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{base}listen = \"127.0.0.1:0\"\nmetrics_token_file = \"{}\"\n",
            env.path("token").display()
        ),
    )
    .unwrap();
    init_repo(&cfg, env.dir.path());
    let mut d = Daemon::start(&env, &cfg, "token");
    let addr = metrics_addr(&mut d);
    assert_eq!(get(&addr, "/metrics", None).0, 401);
    assert_eq!(
        get(&addr, "/metrics", Some("wrong-token-wrong-token-wrong")).0,
        401
    );
    let end = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = get(&addr, "/metrics", Some(token));
        if code == 200 {
            break body;
        }
        assert!(Instant::now() < end, "{code} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Some(m) = parse_metrics(&body) {
        assert!(value(&m, "lifeboat_status_timestamp_seconds", &[]).unwrap() > 1.7e9);
    }
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
}

/// A port taken by another process (a local user could squat it and serve Prometheus what it
/// likes): the daemon says so to the webhooks, and its jobs go on.
#[test]
fn a_taken_metrics_port_is_alerted_and_jobs_go_on() {
    let env = Env::new();
    let hooks = Listener::start(0);
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();
    let db = env.path("chat.db");
    make_db(&db, 50, 100);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{}\"\n[app.chat]\nsqlite = [\"{}\"]\nschedule = \"every 1s\"\n\
             [daemon]\nstate_file = \"{}/state/daemon.json\"\n[alerts]\nretry = \"100ms\"\n\
             [[alerts.webhook]]\nurl = \"{}/hook\"\n",
            env.path("repo").display(),
            db.display(),
            env.dir.path().display(),
            hooks.url
        ),
    )
    .unwrap();
    init_repo(&cfg, env.dir.path());
    let mut d = Daemon::start_listening(&env, &cfg, "squatted", &taken);
    hooks.wait_for("the metrics_unavailable alert", 30, |l| {
        l.events().contains(&(
            "alert".into(),
            "lifeboat run".into(),
            "metrics_unavailable".into(),
        ))
    });
    d.wait_for("a backup", 60, |d| d.count(&["job ok", "point"]) >= 1);
    assert!(d.log().contains("Address already in use"), "{}", d.log());
    drop(squatter);
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
}
