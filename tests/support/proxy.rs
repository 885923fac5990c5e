//! A TCP proxy on a loopback port, between the recorders of a test and their server,
//! that can cut, black-hole or half-deliver the traffic on command.
//!
//! Include it with `#[path = "support/proxy.rs"] mod proxy;`. Only std is used: one
//! thread accepts, two threads per connection pump bytes, each waking every
//! [`TICK`] to read the mode, so every command takes effect within a tick. Dropping
//! the proxy cuts every connection and stops its threads.
#![allow(dead_code, unreachable_pub)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the pumps look at the mode.
pub const TICK: Duration = Duration::from_millis(20);

const PASS: u8 = 0;
const STALL: u8 = 1;
const DROP_REPLIES: u8 = 2;

struct Shared {
    mode: AtomicU8,
    stop: AtomicBool,
    /// Both ends of every open connection, to cut them.
    conns: Mutex<Vec<(TcpStream, TcpStream)>>,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to the server listening on `upstream` (a loopback port).
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("the proxy binds a port");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(PASS),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let accept = std::thread::spawn({
            let shared = shared.clone();
            move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        continue;
                    };
                    shared.conns.lock().unwrap().push((c2, s2));
                    pump(&shared, &client, &server, false);
                    pump(&shared, &server, &client, true);
                }
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's port, to build a URL with.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port())
    }

    /// Closes every open connection (both ends); new ones pass.
    pub fn cut(&self) {
        for (a, b) in self.shared.conns.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// Black-holes the traffic: connections stay open (new ones are accepted) but no
    /// byte moves either way, as across a dead network path.
    pub fn black_hole(&self) {
        self.shared.mode.store(STALL, Ordering::SeqCst);
    }

    /// Requests reach the server, but its replies are thrown away.
    pub fn drop_replies(&self) {
        self.shared.mode.store(DROP_REPLIES, Ordering::SeqCst);
    }

    /// Lets traffic pass again, after cutting the connections that were black-holed
    /// or lost replies (their clients must reconnect, as after a real outage).
    pub fn heal(&self) {
        self.cut();
        self.shared.mode.store(PASS, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies `from` to `to` on a thread of its own, obeying the mode; `replies` marks
/// the server-to-client direction.
fn pump(shared: &Arc<Shared>, from: &TcpStream, to: &TcpStream, replies: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let shared = shared.clone();
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(TICK));
        let mut buf = [0u8; 16 * 1024];
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let mode = shared.mode.load(Ordering::SeqCst);
            if mode == STALL {
                std::thread::sleep(TICK);
                continue;
            }
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => break,
            };
            // Read in pass mode but decided now: a reply read while the mode changed
            // to black-holed is held back like any other.
            match shared.mode.load(Ordering::SeqCst) {
                DROP_REPLIES if replies => continue,
                STALL => {
                    while shared.mode.load(Ordering::SeqCst) == STALL
                        && !shared.stop.load(Ordering::SeqCst)
                    {
                        std::thread::sleep(TICK);
                    }
                    if shared.mode.load(Ordering::SeqCst) == DROP_REPLIES && replies {
                        continue;
                    }
                }
                _ => {}
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
