//! Compiles libsqlite3-sys's bundled amalgamation again, with `SQLITE_ENABLE_DBPAGE_VTAB`, and
//! links it whole-archive so it replaces libsqlite3-sys's copy (see src/lib.rs).
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(lifeboat_sqlite_dbpage)");
    println!("cargo:rerun-if-env-changed=DEP_SQLITE3_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBSQLITE3_FLAGS");
    let Some(include) = env::var_os("DEP_SQLITE3_INCLUDE") else {
        // libsqlite3-sys links a SQLite it did not compile (pkg-config, SQLITE3_LIB_DIR):
        // nothing to replace; lifeboat checks for sqlite_dbpage at start-up.
        println!(
            "cargo:warning=libsqlite3-sys is not built from its bundled sources; \
             the linked SQLite must provide sqlite_dbpage itself"
        );
        return;
    };
    let include = PathBuf::from(include);
    let source = include.join("sqlite3.c");
    if !source.exists() {
        println!(
            "cargo:warning=DEP_SQLITE3_INCLUDE has no sqlite3.c (SQLCipher?); not replacing SQLite"
        );
        return;
    }
    println!("cargo:rerun-if-changed={}", source.display());

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let windows = env::var_os("CARGO_CFG_WINDOWS").is_some();
    let mut cfg = cc::Build::new();
    // The options libsqlite3-sys 0.39's build_bundled uses (keep in step when updating
    // rusqlite: compare with its build.rs), plus sqlite_dbpage.
    cfg.file(&source)
        .include(&include)
        .flag("-DSQLITE_CORE")
        .flag("-DSQLITE_DEFAULT_FOREIGN_KEYS=1")
        .flag("-DSQLITE_ENABLE_API_ARMOR")
        .flag("-DSQLITE_ENABLE_COLUMN_METADATA")
        .flag("-DSQLITE_ENABLE_DBSTAT_VTAB")
        .flag("-DSQLITE_ENABLE_FTS3")
        .flag("-DSQLITE_ENABLE_FTS3_PARENTHESIS")
        .flag("-DSQLITE_ENABLE_FTS5")
        .flag("-DSQLITE_ENABLE_JSON1")
        .flag("-DSQLITE_ENABLE_LOAD_EXTENSION=1")
        .flag("-DSQLITE_ENABLE_RTREE")
        .flag("-DSQLITE_ENABLE_STAT4")
        .flag("-DSQLITE_SOUNDEX")
        .flag("-DSQLITE_THREADSAFE=1")
        .flag("-DSQLITE_USE_URI")
        .flag("-DHAVE_USLEEP=1")
        .flag("-DHAVE_ISNAN")
        .flag("-D_POSIX_THREAD_SAFE_FUNCTIONS")
        .flag("-DSQLITE_ENABLE_DBPAGE_VTAB")
        .warnings(false)
        // The link line below is ours: whole-archive.
        .cargo_metadata(false);
    if target_os == "android" {
        cfg.flag("-DSQLITE_TEMP_STORE=3");
    }
    if !windows {
        cfg.flag("-DHAVE_LOCALTIME_R");
    }
    // The same extra options libsqlite3-sys takes from the environment.
    if let Ok(extras) = env::var("LIBSQLITE3_FLAGS") {
        for extra in extras.split_whitespace() {
            if extra.starts_with("-D") || extra.starts_with("-U") {
                cfg.flag(extra);
            } else if extra.starts_with("SQLITE_") {
                cfg.flag(format!("-D{extra}"));
            }
        }
    }
    for (var, define) in [
        ("SQLITE_MAX_VARIABLE_NUMBER", "SQLITE_MAX_VARIABLE_NUMBER"),
        ("SQLITE_MAX_EXPR_DEPTH", "SQLITE_MAX_EXPR_DEPTH"),
        ("SQLITE_MAX_COLUMN", "SQLITE_MAX_COLUMN"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Ok(v) = env::var(var) {
            cfg.flag(format!("-D{define}={v}"));
        }
    }
    cfg.compile("lifeboat_sqlite3");

    let out_dir = env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rustc-link-search=native={out_dir}");
    println!("cargo:rustc-link-lib=static:+whole-archive=lifeboat_sqlite3");
    println!("cargo:rustc-cfg=lifeboat_sqlite_dbpage");
}
