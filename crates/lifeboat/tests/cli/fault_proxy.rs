//! A TCP proxy in front of the test S3 server that injects network faults: connections
//! refused outright, answered `503 SlowDown`, delayed, or cut in the middle of a request or a
//! response (the case that matters: an upload dropped half way). Decisions come from a seeded
//! RNG; which request meets which fault still depends on timing, so tests assert outcomes that
//! hold for every interleaving.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// Fault rates.
#[derive(Clone, Copy)]
pub struct Faults {
    /// Per connection: closed at once.
    pub drop: f64,
    /// Per connection: answered 503 SlowDown, then closed.
    pub slow_down: f64,
    /// Per connection: 300 ms added before forwarding.
    pub delay: f64,
    /// Per read of up to 64 KiB in either direction: the connection is cut there.
    pub cut: f64,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    injected: Arc<AtomicU64>,
    /// An outage: every connection is refused and open ones are cut.
    down: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let injected = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
        let (st, inj, dn) = (Arc::clone(&stop), Arc::clone(&injected), Arc::clone(&down));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if dn.load(Ordering::Relaxed) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let (rng, inj, dn) = (Arc::clone(&rng), Arc::clone(&inj), Arc::clone(&dn));
                std::thread::spawn(move || serve(client, upstream, faults, &rng, &inj, &dn));
            }
        });
        FaultProxy {
            addr,
            stop,
            injected,
            down,
        }
    }

    /// Starts (`true`) or ends an outage of the store behind the proxy.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    f: Faults,
    rng: &Mutex<rand::rngs::StdRng>,
    injected: &AtomicU64,
    down: &AtomicBool,
) {
    let r: f64 = rng.lock().unwrap().random();
    if r < f.drop {
        injected.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if r < f.drop + f.slow_down {
        injected.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 4096];
        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = client.read(&mut buf);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if r < f.drop + f.slow_down + f.delay {
        injected.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if down.load(Ordering::Relaxed) {
                break;
            }
            let cut: f64 = rng.lock().unwrap().random();
            if cut < f.cut {
                injected.fetch_add(1, Ordering::Relaxed);
                // Forward part of this read, then cut both ways.
                let _ = to.write_all(&buf[..n / 2]);
                break;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|s| {
        s.spawn(|| pump(client, server));
        s.spawn(|| pump(s2, c2));
    });
}
