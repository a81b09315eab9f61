//! PostgreSQL apps against the real server `scripts/test.sh` starts (`LIFEBOAT_TEST_PG_URL`,
//! trust for `postgres`, password-checked role `lbpass`). Every test works in databases of
//! its own (`lbt_<unique>...`) and drops them at the end.
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// The test server.
struct Pg {
    /// `postgresql://postgres@127.0.0.1:PORT`
    base: String,
    bin: PathBuf,
    /// Databases to drop at the end.
    made: std::cell::RefCell<Vec<String>>,
}

impl Pg {
    fn get() -> Option<Pg> {
        let base = service_var("LIFEBOAT_TEST_PG_URL", "postgres")?;
        let bin = PathBuf::from(std::env::var("LIFEBOAT_TEST_PG_BIN").unwrap());
        Some(Pg {
            base,
            bin,
            made: Default::default(),
        })
    }

    fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = StdCommand::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", self.url(db)))
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn create(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
        self.made.borrow_mut().push(db.to_string());
    }

    /// Remembers a database lifeboat made, so it is dropped at the end.
    fn adopt(&self, db: &str) {
        self.made.borrow_mut().push(db.to_string());
    }

    fn exists(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ) == "1"
    }

    fn databases_like(&self, pattern: &str) -> Vec<String> {
        let out = self.psql(
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1"),
        );
        out.lines().map(str::to_string).collect()
    }

    fn count(&self, db: &str, table: &str) -> i64 {
        self.psql(db, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap()
    }

    /// md5 over every row of `table` in id order, limited to `id <= upto`.
    fn checksum(&self, db: &str, table: &str, upto: i64) -> String {
        self.psql(
            db,
            &format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM {table} t WHERE id <= {upto}"),
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for db in self.made.borrow().iter() {
            let _ = StdCommand::new(self.bin.join("psql"))
                .args(["-X", "-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .arg(format!("--dbname={}", self.url("postgres")))
                .output();
        }
    }
}

/// A lower-case name unique to this test.
fn unique(env: &Env) -> String {
    let name = env
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    format!("lbt_{name}")
}

/// A chat app's schema: users (static), messages (the writer appends), a table whose name
/// needs quoting.
fn make_chat(pg: &Pg, db: &str, messages: u32) {
    pg.create(db);
    pg.psql(
        db,
        &format!(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
             INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 300) g;
             CREATE TABLE messages (id bigserial PRIMARY KEY, user_id int REFERENCES users(id), body text NOT NULL);
             INSERT INTO messages (user_id, body) SELECT 1 + g % 300, 'message ' || g || ' ' || md5(g::text) FROM generate_series(1, {messages}) g;
             CREATE INDEX ON messages (user_id);
             CREATE TABLE \"Odd Settings\" (id int PRIMARY KEY, value jsonb);
             INSERT INTO \"Odd Settings\" VALUES (1, '{{\"theme\": \"dark\"}}');"
        ),
    );
}

/// Keeps inserting messages through one psql session until dropped.
struct Inserter {
    child: Child,
}

impl Inserter {
    fn start(pg: &Pg, db: &str) -> Inserter {
        let mut child = StdCommand::new(pg.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", pg.url(db)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            for i in 0.. {
                let sql = format!(
                    "INSERT INTO messages (user_id, body) VALUES (1, 'live {i}'); SELECT pg_sleep(0.002);\n"
                );
                if stdin.write_all(sql.as_bytes()).is_err() {
                    break;
                }
            }
        });
        Inserter { child }
    }
}

impl Drop for Inserter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes lifeboat.toml for app `chatalot`: the database (with `extra` lines in its
/// `[[app.chatalot.postgres]]` table), uploads and two secrets.
fn config(env: &Env, pg: &Pg, url: &str, extra: &str) -> PathBuf {
    let p = env.path("lifeboat.toml");
    std::fs::write(
        &p,
        format!(
            "[app.chatalot]\nfiles = [\"app/uploads\"]\nsecrets = [\"app/jwt_private.pem\", \"app/.env\"]\n\
             [[app.chatalot.postgres]]\nurl = \"{url}\"\nbin_dir = \"{}\"\n{extra}\n",
            pg.bin.display()
        ),
    )
    .unwrap();
    p
}

fn make_files(env: &Env) {
    let app = env.path("app");
    std::fs::create_dir_all(app.join("uploads/2026/11")).unwrap();
    for i in 0..20 {
        std::fs::write(
            app.join(format!("uploads/2026/11/img{i}.bin")),
            body_of(i, 5000 + i as usize * 100),
        )
        .unwrap();
    }
    for (name, text) in [
        (
            "jwt_private.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIE\n",
        ),
        (
            ".env",
            "DATABASE_URL=postgres://chatalot@db/chatalot\nJWT_SECRET=s3cr3t\n",
        ),
    ] {
        let p = app.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `lifeboat --repo REPO --config CFG`.
fn with_config(env: &Env, cfg: &Path) -> assert_cmd::Command {
    let mut c = env.lb();
    c.arg("--config").arg(cfg);
    c
}

/// A repository, a chat database with `messages` rows and the app's files.
fn chat_app(pg: &Pg, messages: u32) -> (Env, String) {
    let env = Env::new();
    env.init();
    let db = unique(&env);
    make_chat(pg, &db, messages);
    make_files(&env);
    (env, db)
}

fn point_json(env: &Env, cfg: &Path) -> Vec<serde_json::Value> {
    let (out, _) = env.ok(&[&"--config", &cfg, &"points", &"--json"]);
    serde_json::from_str(&out).unwrap()
}

fn pg_component(point: &serde_json::Value) -> &serde_json::Value {
    point["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "postgres")
        .expect("a postgres component")
}

#[test]
fn chatalot_backs_up_while_writing_and_restores_into_a_new_database() {
    let Some(pg) = Pg::get() else { return };
    let (env, db) = chat_app(&pg, 20_000);
    let cfg = config(&env, &pg, &pg.url(&db), "");

    let writer = Inserter::start(&pg, &db);
    let t = Instant::now();
    while pg.count(&db, "messages") < 20_050 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);
    let during = pg.count(&db, "messages");
    drop(writer);
    let after = pg.count(&db, "messages");
    assert!(after > 20_000, "the writer ran ({after} messages)");

    let points = point_json(&env, &cfg);
    assert_eq!(points.len(), 1);
    let c = pg_component(&points[0]);
    let recorded = c["row_counts"]["public.messages"].as_i64().unwrap();
    assert!(
        recorded > 20_000 && recorded <= during,
        "recorded {recorded}, during {during}"
    );
    assert_eq!(c["row_counts"]["public.users"], 300);
    assert_eq!(c["row_counts"]["public.\"Odd Settings\""], 1);
    assert!(c["server_version"].as_str().unwrap().starts_with("15"));
    assert!(c["database_size"].as_u64().unwrap() > 1 << 20);

    let restored = format!("{db}_r");
    pg.adopt(&restored);
    let scratch = env.path("scratch");
    let (out, _) = env.ok(&[
        &"--config",
        &cfg,
        &"restore",
        &"chatalot",
        &"--to",
        &scratch,
        &"--pg-database",
        &restored,
    ]);
    assert!(out.contains("row counts of 3 tables match"), "{out}");
    // Exactly the rows of the dump's snapshot, with their content.
    assert_eq!(pg.count(&restored, "messages"), recorded);
    let last: i64 = pg
        .psql(&restored, "SELECT max(id) FROM messages")
        .parse()
        .unwrap();
    assert_eq!(
        pg.checksum(&restored, "messages", last),
        pg.checksum(&db, "messages", last)
    );
    assert_eq!(
        pg.checksum(&restored, "users", i64::MAX),
        pg.checksum(&db, "users", i64::MAX)
    );
    assert_eq!(
        pg.psql(&restored, "SELECT value->>'theme' FROM \"Odd Settings\""),
        "dark"
    );
    // Indexes and sequences came back too.
    assert_eq!(
        pg.psql(
            &restored,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'messages'"
        ),
        "2"
    );
    // Files and secrets: byte-equal, secrets still 0600.
    let app = env.path("app");
    let back = scratch.join(app.strip_prefix("/").unwrap());
    for rel in ["uploads/2026/11/img7.bin", "jwt_private.pem", ".env"] {
        assert_eq!(
            std::fs::read(back.join(rel)).unwrap(),
            std::fs::read(app.join(rel)).unwrap(),
            "{rel}"
        );
    }
    for rel in ["jwt_private.pem", ".env"] {
        let mode = std::fs::metadata(back.join(rel))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{rel}");
    }
    // A second restore under the same name is refused, nothing touched.
    fails(
        with_config(&env, &cfg).args([
            "restore",
            "chatalot",
            "--only",
            "db",
            "--pg-database",
            &restored,
        ]),
        6,
        "already exists",
    );
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn failing_dumps_make_no_point_and_say_why() {
    let Some(pg) = Pg::get() else { return };
    let (env, db) = chat_app(&pg, 100);

    // Wrong password for a role that must give one.
    let pw = env.path("pg-password");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let url = pg.url(&db).replace("postgres@", "lbpass@");
    let cfg = config(
        &env,
        &pg,
        &url,
        &format!("password_file = \"{}\"", pw.display()),
    );
    fails(
        with_config(&env, &cfg).args(["backup", "chatalot"]),
        7,
        "password authentication failed",
    );
    // The right one works (the role and the password file are real).
    std::fs::write(&pw, "lbpass-secret\n").unwrap();
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);
    assert_eq!(point_json(&env, &cfg).len(), 1);

    // A database that does not exist.
    let cfg = config(&env, &pg, &pg.url(&format!("{db}_missing")), "");
    let o = fails(
        with_config(&env, &cfg).args(["backup", "chatalot"]),
        7,
        "does not exist",
    );
    assert!(
        stderr(&o).contains("hint: check the database name"),
        "{}",
        stderr(&o)
    );
    // A server that is not there.
    let cfg = config(&env, &pg, "postgresql://postgres@127.0.0.1:1/x", "");
    fails(
        with_config(&env, &cfg).args(["backup", "chatalot"]),
        7,
        "is the server running",
    );
    // A pg_dump older than the server is refused before it runs.
    let old = env.path("oldbin");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("pg_dump"),
        "#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n",
    )
    .unwrap();
    std::fs::set_permissions(old.join("pg_dump"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(pg.bin.join("psql"), old.join("psql")).unwrap();
    let cfg = env.path("old.toml");
    std::fs::write(
        &cfg,
        format!(
            "[app.chatalot]\n[[app.chatalot.postgres]]\nurl = \"{}\"\nbin_dir = \"{}\"\n",
            pg.url(&db),
            old.display()
        ),
    )
    .unwrap();
    let o = fails(
        with_config(&env, &cfg).args(["backup", "chatalot"]),
        6,
        "pg_dump 12 is older than the server",
    );
    assert!(
        stderr(&o).contains("postgresql-client-15"),
        "{}",
        stderr(&o)
    );
    // Only the one good point exists.
    assert_eq!(point_json(&env, &cfg).len(), 1);
    env.ok(&[&"check", &"--read-data"]);
}

/// Finds a running pg_dump of database `db` (by its command line).
fn find_pg_dump(db: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        let exe = cmd.split('\0').next().unwrap_or("");
        if exe.ends_with("pg_dump") && cmd.contains(db) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn large_database_killed_dump_leaves_no_point_and_unchanged_second_backup_adds_little() {
    let Some(pg) = Pg::get() else { return };
    let env = Env::new();
    env.init();
    let db = unique(&env);
    pg.create(&db);
    // ~100 MiB of table data: text that compresses about 2:1, like chat messages.
    pg.psql(
        &db,
        "CREATE TABLE messages (id bigint PRIMARY KEY, body text NOT NULL);
         INSERT INTO messages SELECT g, 'message ' || g || ': ' || md5(g::text) || ' ' || md5((g * 7)::text) || ' ' || repeat(substr(md5((g % 997)::text), 1, 8), 4)
           FROM generate_series(1, 700000) g;",
    );
    let size: u64 = pg
        .psql(&db, "SELECT pg_database_size(current_database())")
        .parse()
        .unwrap();
    assert!(size > 100 << 20, "database is {size} bytes");
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[app.big]\n[[app.big.postgres]]\nurl = \"{}\"\nbin_dir = \"{}\"\n",
            pg.url(&db),
            pg.bin.display()
        ),
    )
    .unwrap();

    // Kill pg_dump while lifeboat is reading it.
    let backup = env
        .lb_std()
        .args(["--config"])
        .arg(&cfg)
        .args(["backup", "big"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let pid = loop {
        if let Some(pid) = find_pg_dump(&db) {
            break pid;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "pg_dump never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) of a pid we just found.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
    let out = backup.wait_with_output().unwrap();
    assert!(killed, "pg_dump finished before it could be killed");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no point was written"),
        "{}",
        stderr(&out)
    );
    assert!(point_json(&env, &cfg).is_empty());
    env.ok(&[&"check", &"--read-data"]);

    // Two backups of the unchanged database: the second adds almost nothing.
    env.ok(&[&"--config", &cfg, &"backup", &"big"]);
    env.ok(&[&"--config", &cfg, &"backup", &"big"]);
    let points = point_json(&env, &cfg);
    assert_eq!(points.len(), 2);
    let dump = pg_component(&points[1])["size"].as_u64().unwrap();
    let added = points[1]["added"].as_u64().unwrap();
    assert!(dump > 80 << 20, "dump is {dump} bytes");
    assert!(
        added * 10 <= dump,
        "second backup added {added} bytes for a {dump}-byte dump"
    );
    eprintln!("database {size} B, unchanged 2nd backup: dump {dump} B, added {added} B");
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn in_place_restore_swaps_only_after_verifying_and_refuses_open_sessions() {
    let Some(pg) = Pg::get() else { return };
    let (env, db) = chat_app(&pg, 2_000);
    let cfg = config(&env, &pg, &pg.url(&db), "");
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);

    // The app goes wrong.
    pg.psql(
        &db,
        "DELETE FROM messages WHERE id > 100; DROP TABLE \"Odd Settings\"",
    );
    // Without --yes on a non-terminal: refused.
    fails(
        with_config(&env, &cfg).args(["restore", "chatalot", "--only", "db"]),
        6,
        "pass --yes",
    );
    // A session is open: refused, the database untouched.
    let mut session = StdCommand::new(pg.bin.join("psql"))
        .args(["-X", "-q", "-c", "SELECT pg_sleep(60)"])
        .arg(format!("--dbname={}", pg.url(&db)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
    ) == "0"
    {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    fails(
        with_config(&env, &cfg).args(["restore", "chatalot", "--only", "db", "--yes"]),
        6,
        "other session(s) are connected",
    );
    assert_eq!(pg.count(&db, "messages"), 100);
    // --pg-terminate ends it and swaps the verified copy in.
    let (out, err) = env.ok(&[
        &"--config",
        &cfg,
        &"restore",
        &"chatalot",
        &"--only",
        &"db",
        &"--yes",
        &"--pg-terminate",
    ]);
    let _ = session.kill();
    let _ = session.wait();
    assert!(out.contains("row counts of 3 tables match"), "{out}");
    assert!(err.contains("pre-restore point"), "{err}");
    assert_eq!(pg.count(&db, "messages"), 2_000);
    assert_eq!(pg.count(&db, "\"Odd Settings\""), 1);
    // No temporary or old databases are left.
    assert_eq!(pg.databases_like(&format!("{db}%")), vec![db.clone()]);
    // The pre-restore point holds the broken state.
    let points = point_json(&env, &cfg);
    let pre = points
        .iter()
        .find(|p| p["tags"][0] == "pre-restore")
        .expect("pre-restore point");
    assert_eq!(pg_component(pre)["row_counts"]["public.messages"], 100);
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn wrapped_tools_selective_tables_and_roles() {
    let Some(pg) = Pg::get() else { return };
    let (env, db) = chat_app(&pg, 500);
    // A wrapper like `docker exec -i db`: logs each tool it runs, passes stdin/stdout through.
    let wrap = env.path("wrap.sh");
    let log = env.path("wrap.log");
    std::fs::write(
        &wrap,
        format!(
            "#!/bin/sh\necho \"$(basename \"$1\")\" >> {}\nexec \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(
        &env,
        &pg,
        &pg.url(&db),
        &format!("command = [\"{}\"]\nglobals = true", wrap.display()),
    );
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);
    let points = point_json(&env, &cfg);
    assert_eq!(pg_component(&points[0])["globals"], true);

    let only_users = format!("{db}_users");
    pg.adopt(&only_users);
    let (out, _) = env.ok(&[
        &"--config",
        &cfg,
        &"restore",
        &"chatalot",
        &"--only",
        &"postgres",
        &"--pg-database",
        &only_users,
        &"--table",
        &"users",
        &"--pg-globals",
        &"--jobs",
        &"2",
    ]);
    assert!(out.contains("row counts of 1 tables match"), "{out}");
    // The roles script ran; its roles exist here already, which is a warning, not a failure.
    assert!(out.contains("warning: globals.sql"), "{out}");
    assert_eq!(pg.count(&only_users, "users"), 300);
    assert_eq!(
        pg.psql(
            &only_users,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "1"
    );
    let tools = std::fs::read_to_string(&log).unwrap();
    for t in ["pg_dump", "pg_dumpall", "pg_restore", "psql"] {
        assert!(
            tools.lines().any(|l| l == t),
            "{t} not run through the wrapper: {tools}"
        );
    }
    // A table the point does not have is named, before anything is created.
    let o = fails(
        with_config(&env, &cfg).args([
            "restore",
            "chatalot",
            "--only",
            "db",
            "--pg-database",
            &format!("{db}_none"),
            "--table",
            "nosuch",
        ]),
        2,
        "--table nosuch",
    );
    assert!(stderr(&o).contains("public.users"), "{}", stderr(&o));
    assert!(!pg.exists(&format!("{db}_none")));
    // --table only into a new database.
    fails(
        with_config(&env, &cfg).args([
            "restore", "chatalot", "--only", "db", "--yes", "--table", "users",
        ]),
        2,
        "new database only",
    );
    assert!(pg.exists(&db));
}

#[test]
fn chatalot_demo_runs_against_the_server() {
    let Some(pg) = Pg::get() else { return };
    let env = Env::new();
    let o = assert_cmd::Command::cargo_bin("lifeboat")
        .unwrap()
        .args(["demo", "--messages", "3000", "--dir"])
        .arg(env.path("demo"))
        .arg(format!("--postgres={}", pg.url("postgres")))
        .arg("--pg-bin")
        .arg(&pg.bin)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("row counts of 3 tables match"), "{out}");
    assert!(
        out.contains("each table's md5 equal to the source's"),
        "{out}"
    );
    assert!(out.contains("all succeeded"), "{out}");
    // The demo drops its databases.
    assert!(pg.databases_like("lifeboat_demo_%").is_empty());
}

#[test]
fn schema_only_point_restores_every_table_empty() {
    let Some(pg) = Pg::get() else { return };
    let (env, db) = chat_app(&pg, 1_000);
    let cfg = config(&env, &pg, &pg.url(&db), "schema_only = true");
    env.ok(&[
        &"--config",
        &cfg,
        &"backup",
        &"chatalot",
        &"--tag",
        &"pre-migration",
    ]);
    let points = point_json(&env, &cfg);
    let c = pg_component(&points[0]);
    assert_eq!(c["schema_only"], true);
    assert_eq!(c["row_counts"]["public.messages"], 1_000);
    let target = format!("{db}_schema");
    pg.adopt(&target);
    let (out, _) = env.ok(&[
        &"--config",
        &cfg,
        &"restore",
        &"chatalot",
        &"--only",
        &"db",
        &"--pg-database",
        &target,
    ]);
    assert!(out.contains("schema only: 3 tables present"), "{out}");
    assert_eq!(pg.count(&target, "messages"), 0);
    assert_eq!(pg.count(&target, "\"Odd Settings\""), 0);
}

#[test]
fn several_databases_in_one_point_restore_side_by_side() {
    let Some(pg) = Pg::get() else { return };
    let env = Env::new();
    env.init();
    let a = unique(&env);
    let b = format!("{a}_jobs");
    make_chat(&pg, &a, 700);
    make_chat(&pg, &b, 40);
    make_files(&env);
    let cfg = config(
        &env,
        &pg,
        &pg.url("postgres"),
        &format!("databases = [\"{a}\", \"{b}\"]"),
    );
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);
    let points = point_json(&env, &cfg);
    let dbs: Vec<_> = points[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "postgres")
        .map(|c| c["database"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dbs, vec![a.clone(), b.clone()]);
    // One name for two databases is ambiguous.
    fails(
        with_config(&env, &cfg).args(["restore", "chatalot", "--only", "db", "--pg-database", "x"]),
        2,
        "names one database, the point has 2",
    );
    // A drill restores each beside its original, under a name with the point's time.
    let (out, _) = env.ok(&[
        &"--config",
        &cfg,
        &"restore",
        &"chatalot",
        &"--to",
        &env.path("scratch"),
    ]);
    let made = pg.databases_like(&format!("{a}%_restored_%"));
    for m in &made {
        pg.adopt(m);
    }
    assert_eq!(made.len(), 2, "{made:?}\n{out}");
    let counts: Vec<i64> = made.iter().map(|m| pg.count(m, "messages")).collect();
    assert!(counts.contains(&700) && counts.contains(&40), "{counts:?}");
}

/// `lifeboat drill` of a point with two PostgreSQL databases, uploads and secrets: each
/// database restored into a new one on the same server, its row counts checked, and dropped
/// after the drill; nothing of the live databases changes.
#[test]
fn a_drill_restores_each_database_beside_its_original_and_drops_it_after() {
    let Some(pg) = Pg::get() else { return };
    let env = Env::new();
    env.init();
    let a = unique(&env);
    let b = format!("{a}_jobs");
    make_chat(&pg, &a, 300);
    make_chat(&pg, &b, 30);
    make_files(&env);
    let cfg = config(
        &env,
        &pg,
        &pg.url("postgres"),
        &format!("databases = [\"{a}\", \"{b}\"]"),
    );
    env.ok(&[&"--config", &cfg, &"backup", &"chatalot"]);
    let before = pg.databases_like(&format!("{a}%"));
    let (out, _) = env.ok(&[
        &"--config",
        &cfg,
        &"drill",
        &"chatalot",
        &"--json",
        &"--scratch",
        &env.dir.path(),
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let checks = r["checks"].to_string();
    assert!(
        checks.contains("_drill_") && checks.contains("dropped after the drill"),
        "{checks}"
    );
    assert!(checks.contains("row counts"), "{checks}");
    assert!(checks.contains("read back, equal to the point"), "{checks}");
    let after = pg.databases_like(&format!("{a}%"));
    for m in after.iter().filter(|m| !before.contains(m)) {
        pg.adopt(m);
    }
    assert_eq!(after, before, "the drill's databases are dropped");
    assert_eq!(pg.count(&a, "messages"), 300);
    let points = point_json(&env, &cfg);
    assert_eq!(points[0]["proofs"]["last_drill"]["ok"], true);
}
