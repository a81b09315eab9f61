//! The daemon's HTTP endpoint (`[daemon] listen`, default `127.0.0.1:9186`): `/metrics` in
//! the Prometheus text format, rendered at each scrape from the watcher's newest report and
//! the jobs' counters (a scrape reads no store). Only loopback without a token: bound to any
//! other address, `[daemon] metrics_token_file` must name the bearer token every request
//! carries, compared in constant time. It runs on its own thread with a small async runtime;
//! failing to bind is logged and the daemon goes on without it (backups matter more).
//!
//! Any local user can connect to loopback, and every connection costs the daemon a file
//! descriptor, which its backups need too: at most [`MAX_CONNECTIONS`] are served at once
//! (more are closed as soon as they are accepted), and each is closed
//! [`CONNECTION_LIFETIME`] after it was accepted, whether it sent a request or not (hyper's
//! header timeout needs a timer axum does not give it, so a client that never finishes its
//! request would otherwise hold its connection for ever).
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_app::{render_metrics, spawn_runtime_thread, stream_lags, Config};
use lifeboat_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::monitor::Shared;

/// Connections served at once, at most (a scrape needs one).
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// How long a connection is kept, from its accept (a scrape takes milliseconds; Prometheus
/// opens a new connection when its kept-alive one was closed).
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Default `[daemon] listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9186";

/// Where to listen and the token to demand, from `lifeboat run --listen` (`given`), else
/// `[daemon]`; `None` when `"off"`.
pub(crate) fn settings(
    config: &Config,
    given: Option<&str>,
) -> Result<Option<(SocketAddr, Option<Vec<u8>>)>> {
    let listen = given
        .or(config.daemon.listen.as_deref())
        .unwrap_or(DEFAULT_LISTEN);
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
    let app = router(shared, token);
    spawn_runtime_thread("http", "/metrics not served", async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                let l = Bounded::new(l, MAX_CONNECTIONS, CONNECTION_LIFETIME);
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!("/metrics stopped: {e}");
                }
            }
            Err(e) => tracing::error!("/metrics not served: {e}"),
        }
    })?;
    tracing::info!("serving /metrics on http://{addr}/metrics");
    Ok(())
}

fn router(shared: Arc<Shared>, token: Option<Vec<u8>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(App { shared, token }))
}

/// A listener that serves at most `slots` connections at once, each for at most `lifetime`
/// (see the module documentation).
struct Bounded {
    inner: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl Bounded {
    fn new(inner: tokio::net::TcpListener, slots: usize, lifetime: Duration) -> Bounded {
        Bounded {
            inner,
            slots: Arc::new(Semaphore::new(slots)),
            lifetime,
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => {
                    let deadline = Box::pin(tokio::time::sleep(self.lifetime));
                    return (
                        Limited {
                            io,
                            deadline,
                            _slot: slot,
                        },
                        addr,
                    );
                }
                // Dropped: closed at once.
                Err(_) => tracing::debug!("/metrics: {addr} refused: too many connections"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its reads and writes once its deadline has passed (hyper then
/// closes it), and frees its slot when dropped.
struct Limited {
    io: tokio::net::TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Limited {
    /// Whether the deadline passed; otherwise `cx` is woken when it does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn expired() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection kept too long")
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// Whether the server closed `s` (a read ends, within 5 s).
    fn closed(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 512];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Review of issue 15: any local user could open connections to `/metrics` and keep
    /// them (an unfinished request is never timed out), each a file descriptor of the
    /// daemon, until its backups could open no file. Now the excess is closed at once and
    /// every connection after its lifetime.
    #[test]
    fn idle_connections_are_bounded_and_expire() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let l = Bounded::new(l, 2, Duration::from_millis(500));
                let _ = axum::serve(l, router(Arc::default(), None)).await;
            });
        });
        let start = std::time::Instant::now();
        // Two slow clients: half a request line each, never finished.
        let mut slow: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metr").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut third = TcpStream::connect(addr).unwrap();
        assert!(
            closed(&mut third),
            "a connection beyond the limit is closed"
        );
        assert!(start.elapsed() < Duration::from_millis(500));
        for s in &mut slow {
            assert!(
                closed(s),
                "an unfinished request is closed after its lifetime"
            );
        }
        // The slots are free again: a scrape is answered (503 before the first status).
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
}
