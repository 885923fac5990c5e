//! Worker processes for the tests that need real ones: the test binary started again
//! as one replica of a service on a shared Redis server, driven over its stdin and
//! stdout, and a fenced side-effect store the replicas write to.
//!
//! Include it with `#[path = "support/worker.rs"] mod worker;` next to `mod common;`,
//! and give the test file the entry point the workers run:
//!
//! ```ignore
//! #[test]
//! #[ignore = "the entry point of the worker processes that the other tests start"]
//! fn worker_entry() {
//!     worker::entry();
//! }
//! ```
//!
//! # The worker's commands (one per line on its stdin)
//!
//! | command | messages |
//! |---|---|
//! | `launch <id> <sleep_ms> <ok\|err>` | `started <id> <token>` from inside the future; `launched <id>`, `refused <id> <state>` or `error <id> <text>`; after the sleep `wrote <id> <token> <1\|0>` (the fenced write, accepted or not); `ended <id> <outcome>` once the handle resolves (`ok`, `failed`, `lost`, `cancelled`, ...) |
//! | `status <id>` | `status <id> <phase> <reason\|->` or `error <id> <text>` |
//! | `wait <id>` | `settled <id> <phase> <reason\|->` or `error <id> <text>` |
//! | `hists <count> <first_id> <ids> <ops> <start_ns> <slot_ms> <seed> <stale>` | `ev ...` lines ([`linear::Event`]) for each history as it ends, then `hists-done` (see `Plan`) |
//! | `race <launches> <ids> <seed>` | `raced <launched> <succeeded> <revoked> <errors>` once done: launches of random ids, a fifth of them failing, with a revoke of every tenth success; every success and revoke writes to the fence first |
//!
//! Messages start with `@@ ` on stdout, so that the test harness's own output is
//! told apart; the worker exits when its stdin closes.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::timing::Deadline;

#[path = "linear.rs"]
pub mod linear;

/// The name of the test function that runs [`entry`].
pub const ENTRY: &str = "worker_entry";

/// How long a worker may take to start, or to answer a command.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the fence waits for a request on a connection it accepted.
const FENCE_IO_TIMEOUT: Duration = Duration::from_secs(5);

const PREFIX: &str = "@@ ";

/// A worker process: killed (SIGKILL) and reaped when dropped, also when the test
/// fails.
pub struct Worker {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Messages received but not asked for yet.
    seen: VecDeque<String>,
}

impl Worker {
    /// Starts a worker whose recorder uses `namespace` on the server at `url` with
    /// `lease`, writing its side effects to `fence` (none if `None`); returns once it
    /// is ready.
    pub fn start(
        name: &str,
        url: &str,
        namespace: &str,
        lease: Duration,
        fence: Option<SocketAddr>,
    ) -> Worker {
        Worker::start_with(name, url, namespace, lease, fence, &[])
    }

    /// Like [`start`](Self::start), with more environment for the worker
    /// (`ATR_WORKER_FAULT=finish_ignores_token` builds its recorder with that fault).
    pub fn start_with(
        name: &str,
        url: &str,
        namespace: &str,
        lease: Duration,
        fence: Option<SocketAddr>,
        env: &[(&str, &str)],
    ) -> Worker {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([
                ENTRY,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ATR_WORKER", name)
            .env("ATR_WORKER_URL", url)
            .env("ATR_WORKER_NAMESPACE", namespace)
            .env("ATR_WORKER_LEASE_MS", lease.as_millis().to_string())
            .env(
                "ATR_WORKER_FENCE",
                fence.map(|a| a.to_string()).unwrap_or_default(),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness's "test worker_entry ... " may precede the first one.
                if let Some(at) = line.find(PREFIX) {
                    if tx.send(line[at + PREFIX.len()..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut worker = Worker {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: VecDeque::new(),
        };
        worker.expect("ready", |m| m == "ready");
        worker
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("the worker's stdin is open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("worker {}: cannot send {command:?}: {e}", self.name));
    }

    /// The first message (received or still to come) that `matches`, within
    /// `timeout`; the others are kept for later calls.
    pub fn expect_within(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        if let Some(i) = self.seen.iter().position(|m| matches(m)) {
            return self.seen.remove(i);
        }
        let deadline = Deadline::after(timeout);
        loop {
            let left = deadline.left()?;
            match self.lines.recv_timeout(left) {
                Ok(message) if matches(&message) => return Some(message),
                Ok(message) => self.seen.push_back(message),
                Err(_) => return None,
            }
        }
    }

    /// Like [`expect_within`](Self::expect_within) with [`REPLY_TIMEOUT`], panicking
    /// with `what` if nothing matches in time.
    pub fn expect(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        match self.expect_within(REPLY_TIMEOUT, matches) {
            Some(message) => message,
            None => panic!(
                "worker {}: no {what} within {REPLY_TIMEOUT:?}; unclaimed messages: {:?}",
                self.name, self.seen
            ),
        }
    }

    /// The first message that starts with `prefix` (give a trailing space after an
    /// id, so that `7` does not match `70`).
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect(prefix, |m| m.starts_with(prefix))
    }

    /// Every message from now (and those kept) up to the one equal to `done`, within
    /// `timeout`.
    pub fn collect_until(&mut self, done: &str, timeout: Duration) -> Vec<String> {
        let mut out: Vec<String> = self.seen.drain(..).collect();
        if let Some(i) = out.iter().position(|m| m == done) {
            self.seen.extend(out.drain(i + 1..));
            out.pop();
            return out;
        }
        let deadline = Deadline::after(timeout);
        loop {
            let left = deadline
                .left()
                .unwrap_or_else(|| panic!("worker {}: no {done} within {timeout:?}", self.name));
            match self.lines.recv_timeout(left) {
                Ok(message) if message == done => return out,
                Ok(message) => out.push(message),
                Err(_) => panic!("worker {}: no {done} within {timeout:?}", self.name),
            }
        }
    }

    /// Sends `command` and returns the first message starting with one of `replies`.
    pub fn ask(&mut self, command: &str, replies: &[&str]) -> String {
        self.send(command);
        self.expect(command, |m| replies.iter().any(|r| m.starts_with(r)))
    }

    fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Stops the process (SIGSTOP): it runs nothing, renews nothing, until resumed.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`STOP`, `CONT`, ...) to process `pid` with `kill`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One write a worker asked the fence for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FencedWrite {
    /// `W` for the side effect of a success, `R` for that of a revoke.
    pub kind: char,
    pub id: u64,
    pub token: u64,
    pub accepted: bool,
}

/// A side-effect store that accepts a write of an id only with a token larger than
/// that of every write of the id it accepted before, as a storage fenced by the
/// recorder's tokens would (`UPDATE .. WHERE token < $t`). A revoke's marker (`R`,
/// token 0) is logged in order without a check. It listens on a loopback port and
/// logs every request.
pub struct Fence {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<FencedWrite>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fence {
    pub fn start() -> Fence {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("the fence binds a port");
        let addr = listener.local_addr().expect("the fence's address");
        let log: Arc<Mutex<Vec<FencedWrite>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (log, stop) = (log.clone(), stop.clone());
            move || {
                let mut last: HashMap<u64, u64> = HashMap::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = serve_fence(conn, &mut last, &log);
                }
            }
        });
        Fence {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every write asked for so far, in the order the fence decided them.
    pub fn writes(&self) -> Vec<FencedWrite> {
        self.log.lock().unwrap().clone()
    }

    /// The accepted writes of `id`, in order.
    pub fn accepted(&self, id: u64) -> Vec<FencedWrite> {
        self.writes()
            .into_iter()
            .filter(|w| w.id == id && w.accepted)
            .collect()
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection: `<W|R> <id> <token>`, answered `1` (accepted) or `0`.
fn serve_fence(
    conn: TcpStream,
    last: &mut HashMap<u64, u64>,
    log: &Mutex<Vec<FencedWrite>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(FENCE_IO_TIMEOUT))?;
    conn.set_write_timeout(Some(FENCE_IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(id), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(());
    };
    let (Some(kind), Ok(id), Ok(token)) = (kind.chars().next(), id.parse(), token.parse()) else {
        return Ok(());
    };
    // A revoke's marker is logged in order, unfenced: revoke futures get no token.
    let accepted = kind == 'R' || last.get(&id).is_none_or(|&seen| token > seen);
    if accepted && kind != 'R' {
        last.insert(id, token);
    }
    log.lock().unwrap().push(FencedWrite {
        kind,
        id,
        token,
        accepted,
    });
    (&conn).write_all(if accepted { b"1\n" } else { b"0\n" })
}

/// Asks the fence at `addr` for a write; `false` if refused or unreachable.
pub fn fence_write(addr: SocketAddr, kind: char, id: u64, token: u64) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut conn = TcpStream::connect_timeout(&addr, FENCE_IO_TIMEOUT)?;
        conn.set_read_timeout(Some(FENCE_IO_TIMEOUT))?;
        writeln!(conn, "{kind} {id} {token}")?;
        let mut reply = String::new();
        BufReader::new(&conn).read_line(&mut reply)?;
        Ok(reply.trim() == "1")
    };
    attempt().unwrap_or(false)
}

/// The worker's main: serves commands until stdin closes, then exits the process.
/// Does nothing unless started by [`Worker::start`] (`ATR_WORKER` set).
pub fn entry() {
    if std::env::var_os("ATR_WORKER").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the worker's runtime");
    runtime.block_on(serve());
    // Exit here, without the test harness's summary and without waiting for tasks.
    std::process::exit(0);
}

#[cfg(feature = "redis")]
#[path = "worker/histories.rs"]
mod histories;
#[cfg(feature = "redis")]
#[path = "worker/serving.rs"]
mod serving;

#[cfg(feature = "redis")]
use serving::serve;

/// The workers' random numbers (xorshift; `rng` must not be 0).
fn step(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

#[cfg(not(feature = "redis"))]
async fn serve() {
    panic!("the worker processes need the `redis` feature");
}
