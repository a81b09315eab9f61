//! The daemon's HTTP endpoint (`[daemon] listen`, default `127.0.0.1:9186`): `/metrics` in
//! the Prometheus text format, rendered at each scrape from the watcher's newest report and
//! the jobs' counters (a scrape reads no store). Only loopback without a token: bound to any
//! other address, `[daemon] metrics_token_file` must name the bearer token every request
//! carries, compared in constant time. It runs on its own thread with a small async runtime;
//! failing to bind is logged and the daemon goes on without it (backups matter more).
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_app::{render_metrics, stream_lags, Config};
use lifeboat_core::{Error, ErrorKind, Result};

use crate::monitor::Shared;

/// Default `[daemon] listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9186";

/// Where to listen and the token to demand, from `[daemon]`; `None` when `listen = "off"`.
pub(crate) fn settings(config: &Config) -> Result<Option<(SocketAddr, Option<Vec<u8>>)>> {
    let listen = config.daemon.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    if listen == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = listen.parse().map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("[daemon] listen = {listen:?} is not an address and port ({e})"),
        )
        .with_hint("write e.g. listen = \"127.0.0.1:9186\", or \"off\"")
    })?;
    let token = match &config.daemon.metrics_token_file {
        Some(p) => {
            let t = std::fs::read(p).map_err(|e| Error::io(p.display(), e))?;
            let t = t.trim_ascii().to_vec();
            if t.len() < 16 {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "[daemon] metrics_token_file {}: the token is shorter than 16 bytes",
                        p.display()
                    ),
                ));
            }
            Some(t)
        }
        None => None,
    };
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("[daemon] listen = {listen:?} is not loopback: anyone who can reach it would read the metrics"),
        )
        .with_hint("set [daemon] metrics_token_file to a file with a long random token (Prometheus sends it with authorization.credentials_file), or listen on 127.0.0.1"));
    }
    Ok(Some((addr, token)))
}

struct App {
    shared: Arc<Shared>,
    token: Option<Vec<u8>>,
}

/// Binds `addr` now (so a taken port is reported at start) and serves on a new thread.
pub(crate) fn serve(addr: SocketAddr, token: Option<Vec<u8>>, shared: Arc<Shared>) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::io(format!("listen on {addr} for /metrics"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listen for /metrics", e))?;
    // The real port when the config asked for port 0 (tests).
    let addr = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(App { shared, token }));
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("/metrics not served: no async runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("/metrics stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("/metrics not served: {e}"),
                }
            });
        })
        .map_err(|e| Error::io("start the HTTP thread", e))?;
    tracing::info!("serving /metrics on http://{addr}/metrics");
    Ok(())
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(want) = &app.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !same(given, want) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required\n",
            )
                .into_response();
        }
    }
    let report = app
        .shared
        .report
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(mut report) = report else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the first status is still being taken\n",
        )
            .into_response();
    };
    // The captures move every second; the rest changes only when a job ends (a new look).
    let streams = app.shared.streams();
    let now = jiff::Timestamp::now();
    for a in &mut report.apps {
        a.continuous = stream_lags(streams.get(&a.app), now);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&report, Some(&app.shared.counters)),
    )
        .into_response()
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
