//! Worker processes for the tests that need real ones: the test binary started again
//! as one replica of a service on a shared Redis server, driven over its stdin and
//! stdout, and a fenced side-effect store the replicas write to.
//!
//! Include it with `#[path = "support/worker.rs"] mod worker;` and give the test file
//! the entry point the workers run:
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
use std::time::{Duration, Instant};

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
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
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
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
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

// ---------------------------------------------------------------------------------
// The worker's side.

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
mod serving {
    use super::*;
    use async_tasks_recorder::redis::RedisRecorder;
    use async_tasks_recorder::{FailureReason, LaunchError, LaunchOptions, TaskError};

    pub(super) fn say(message: impl std::fmt::Display) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{message}");
        let _ = out.flush();
    }

    fn var(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by Worker::start"))
    }

    fn reason(r: Option<FailureReason>) -> &'static str {
        r.map_or("-", FailureReason::as_str)
    }

    pub(super) async fn serve() {
        let lease = Duration::from_millis(var("ATR_WORKER_LEASE_MS").parse().expect("ms"));
        let fence: Option<SocketAddr> = var("ATR_WORKER_FENCE").parse().ok();
        let mut builder = RedisRecorder::builder(var("ATR_WORKER_URL"))
            .namespace(var("ATR_WORKER_NAMESPACE"))
            .lease(lease);
        if std::env::var("ATR_WORKER_FAULT").as_deref() == Ok("finish_ignores_token") {
            builder = builder
                .inject_fault(async_tasks_recorder::redis::InjectedFault::FinishIgnoresToken);
        }
        let recorder: RedisRecorder<u64> =
            builder.build().await.expect("the worker's recorder builds");
        let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        say("ready");
        while let Some(line) = commands.recv().await {
            let recorder = recorder.clone();
            tokio::spawn(async move { command(&recorder, fence, &line).await });
        }
    }

    async fn write(fence: Option<SocketAddr>, kind: char, id: u64, token: u64) -> bool {
        match fence {
            Some(addr) => tokio::task::spawn_blocking(move || fence_write(addr, kind, id, token))
                .await
                .unwrap_or(false),
            None => true,
        }
    }

    fn outcome(out: &Result<(), TaskError<()>>) -> &'static str {
        match out {
            Ok(()) => "ok",
            Err(TaskError::Failed(())) => "failed",
            Err(TaskError::Lost) => "lost",
            Err(TaskError::Cancelled) => "cancelled",
            Err(TaskError::TimedOut) => "timed_out",
            Err(TaskError::Panicked(_)) => "panicked",
            Err(TaskError::Dropped) => "dropped",
            Err(_) => "other",
        }
    }

    /// Says how a launch of `id` went: `launched`, then how it `ended`; or why not.
    async fn tell<F>(
        id: u64,
        launched: Result<async_tasks_recorder::TaskHandle<(), ()>, LaunchError<F>>,
    ) {
        match launched {
            Ok(handle) => {
                say(format!("launched {id}"));
                let out = handle.await;
                say(format!("ended {id} {}", outcome(&out)));
            }
            Err(LaunchError::Refused(state, _)) => say(format!("refused {id} {state}")),
            Err(LaunchError::Store(e, _)) => say(format!("error {id} {e}")),
            Err(_) => say(format!("error {id} closed")),
        }
    }

    async fn command(recorder: &RedisRecorder<u64>, fence: Option<SocketAddr>, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("command {line:?}: word {i} is not a number"))
        };
        match words.first().copied() {
            Some("launch") => {
                let (id, sleep, ok) = (num(1), Duration::from_millis(num(2)), words[3] == "ok");
                let launched = recorder
                    .launch_fenced(
                        id,
                        move |ctx| async move {
                            let token = ctx.token();
                            say(format!("started {id} {token}"));
                            tokio::time::sleep(sleep).await;
                            let wrote = write(fence, 'W', id, token).await;
                            say(format!("wrote {id} {token} {}", u8::from(wrote)));
                            ok.then_some(()).ok_or(())
                        },
                        LaunchOptions::new(),
                    )
                    .await;
                tell(id, launched).await;
            }
            Some("retry") => {
                // A retrying launch whose attempts fail at once, an hour apart: after
                // the first it waits, holding its lease, for the second.
                let id = num(1);
                let hour = Duration::from_secs(3600);
                let policy = async_tasks_recorder::RetryPolicy::new(2).backoff(hour, hour);
                let make = move |ctx: async_tasks_recorder::TaskContext| {
                    say(format!("attempt {id} {}", ctx.attempt()));
                    async { Err::<(), ()>(()) }
                };
                let launched = recorder
                    .launch_retrying(id, make, policy, LaunchOptions::new())
                    .await;
                tell(id, launched).await;
            }
            Some("status") => {
                let id = num(1);
                match recorder.status(&id).await {
                    Ok(s) => say(format!(
                        "status {id} {} {}",
                        s.phase,
                        reason(s.last_failure)
                    )),
                    Err(e) => say(format!("error {id} {e}")),
                }
            }
            Some("wait") => {
                let id = num(1);
                match recorder.wait(&id).await {
                    Ok(s) => say(format!("settled {id} {} {}", s.phase, reason(s.failure))),
                    Err(e) => say(format!("error {id} {e}")),
                }
            }
            Some("race") => race(recorder, fence, num(1), num(2), num(3)).await,
            Some("hists") => {
                let plan = Plan {
                    count: num(1),
                    first: num(2),
                    ids: num(3),
                    ops: num(4),
                    start_ns: num(5),
                    slot_ms: num(6),
                    seed: num(7),
                    stale: num(8) == 1,
                };
                histories(recorder, plan).await;
            }
            _ => say(format!("unknown {line}")),
        }
    }

    /// `launches` launches of ids below `ids`, 16 at a time, from a seeded generator.
    async fn race(
        recorder: &RedisRecorder<u64>,
        fence: Option<SocketAddr>,
        launches: u64,
        ids: u64,
        seed: u64,
    ) {
        use std::sync::atomic::AtomicU64;
        let counters: Arc<[AtomicU64; 4]> = Arc::default();
        let next = Arc::new(AtomicU64::new(0));
        let mut lanes = Vec::new();
        for lane in 0..16u64 {
            let (recorder, counters, next) = (recorder.clone(), counters.clone(), next.clone());
            lanes.push(tokio::spawn(async move {
                let mut rng = (seed ^ (lane + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= launches {
                        break;
                    }
                    let r = step(&mut rng);
                    let id = (r >> 33) % ids;
                    let fails = (r >> 20) % 5 == 0;
                    let counters2 = counters.clone();
                    let launched = recorder
                        .launch_fenced(
                            id,
                            move |ctx| async move {
                                tokio::task::yield_now().await;
                                if fails {
                                    return Err(());
                                }
                                if write(fence, 'W', id, ctx.token()).await {
                                    counters2[1].fetch_add(1, Ordering::SeqCst);
                                    Ok(())
                                } else {
                                    Err(())
                                }
                            },
                            LaunchOptions::new(),
                        )
                        .await;
                    match launched {
                        Ok(handle) => {
                            counters[0].fetch_add(1, Ordering::SeqCst);
                            if handle.await.is_ok() && (r >> 40) % 10 == 0 {
                                let revoked = recorder
                                    .revoke_task_block(id, async move {
                                        write(fence, 'R', id, 0).await;
                                        Ok::<_, ()>(())
                                    })
                                    .await;
                                if revoked.is_ok() {
                                    counters[2].fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(LaunchError::Refused(..)) => {}
                        Err(_) => {
                            counters[3].fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        for lane in lanes {
            let _ = lane.await;
        }
        let c = |i: usize| counters[i].load(Ordering::SeqCst);
        say(format!("raced {} {} {} {}", c(0), c(1), c(2), c(3)));
    }
}

#[cfg(feature = "redis")]
use serving::serve;

/// The workers' random numbers (xorshift; `rng` must not be 0).
fn step(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// What a `hists` command asks for: `count` histories, the k-th on the ids
/// `first + k * ids ..`, started at `start_ns + k * slot_ms` on the shared clock, each
/// of two clients making `ops` operations; `stale` answers every other query of an id
/// with the previous answer (the injected fault: a read from a lagging copy).
#[derive(Debug, Clone, Copy)]
struct Plan {
    count: u64,
    first: u64,
    ids: u64,
    ops: u64,
    start_ns: u64,
    slot_ms: u64,
    seed: u64,
    stale: bool,
}

#[cfg(feature = "redis")]
mod recording {
    use super::linear::{now_ns, Event, Keeps, Op, Ph, Read};
    use super::serving::say;
    use super::*;
    use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
    use async_tasks_recorder::{LaunchError, LaunchOptions, TaskError};

    type Log = Arc<Mutex<Vec<Event>>>;

    fn at() -> Arc<Mutex<Option<u64>>> {
        Arc::default()
    }

    pub(super) async fn histories(recorder: &RedisRecorder<u64>, plan: Plan) {
        let me = std::env::var("ATR_WORKER").unwrap_or_default();
        let cache: Arc<Mutex<HashMap<u64, (Read, bool)>>> = Arc::default();
        for k in 0..plan.count {
            let start = plan.start_ns + k * plan.slot_ms * 1_000_000;
            if let Some(wait) = start.checked_sub(now_ns()) {
                tokio::time::sleep(Duration::from_nanos(wait)).await;
            }
            let log: Log = Arc::default();
            let mut clients = Vec::new();
            for c in 0..2u64 {
                let rng = plan.seed ^ (k << 8 | c).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                clients.push(tokio::spawn(client(
                    recorder.clone(),
                    format!("{me}.{c}"),
                    k,
                    plan,
                    rng | 1,
                    log.clone(),
                    cache.clone(),
                )));
            }
            for c in clients {
                let _ = c.await;
            }
            for e in log.lock().unwrap().drain(..) {
                say(e);
            }
        }
        say("hists-done");
    }

    #[allow(clippy::too_many_arguments)]
    async fn client(
        recorder: RedisRecorder<u64>,
        me: String,
        history: u64,
        plan: Plan,
        mut rng: u64,
        log: Log,
        cache: Arc<Mutex<HashMap<u64, (Read, bool)>>>,
    ) {
        let base = plan.first + history * plan.ids;
        let push = |id: u64, op: Op, invoked: u64, responded: Option<u64>| {
            log.lock().unwrap().push(Event {
                history,
                client: me.clone(),
                id,
                op,
                invoked,
                responded,
            });
        };
        let mut ends = Vec::new();
        for _ in 0..plan.ops {
            let id = base + step(&mut rng) % plan.ids;
            let ok = step(&mut rng) % 10 < 7;
            let pause = Duration::from_micros(step(&mut rng) % 2_000);
            match step(&mut rng) % 3 {
                0 => {
                    let returned = at();
                    let mark = returned.clone();
                    let invoked = now_ns();
                    // Every launch keeps its end: the reads check what was kept.
                    let launched = recorder
                        .launch_kept(
                            id,
                            async move {
                                tokio::time::sleep(pause).await;
                                *mark.lock().unwrap() = Some(now_ns());
                                ok.then_some("done").ok_or("failed")
                            },
                            LaunchOptions::new(),
                        )
                        .await;
                    let responded = now_ns();
                    match launched {
                        Ok(handle) => {
                            push(id, Op::Launch(Some(Ok(()))), invoked, Some(responded));
                            let responded_at = responded;
                            let log = log.clone();
                            let me = me.clone();
                            ends.push(tokio::spawn(async move {
                                let out = handle.await;
                                let done = now_ns();
                                let returned = *returned.lock().unwrap();
                                let responded = match out {
                                    Ok(_) | Err(TaskError::Failed(_)) => Some(done),
                                    // The lease was lost: the end may not have been
                                    // recorded, and the lease's expiry may have made it.
                                    _ => None,
                                };
                                if responded.is_none() {
                                    log.lock().unwrap().push(Event {
                                        history,
                                        client: me.clone(),
                                        id,
                                        op: Op::Expire,
                                        invoked: responded_at,
                                        responded: None,
                                    });
                                }
                                // A future that never returned (stopped when its lease
                                // was lost) made no finish.
                                if let Some(invoked) = returned {
                                    log.lock().unwrap().push(Event {
                                        history,
                                        client: me,
                                        id,
                                        op: Op::Finish(ok),
                                        invoked,
                                        responded,
                                    });
                                }
                            }));
                        }
                        Err(LaunchError::Refused(state, _)) => push(
                            id,
                            Op::Launch(Some(Err(state.as_str().to_string()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(_) => push(id, Op::Launch(None), invoked, None),
                    }
                }
                1 => {
                    let invoked = now_ns();
                    let read = recorder.status(&id).await;
                    let responded = now_ns();
                    let Ok(status) = read else {
                        continue;
                    };
                    let mut phase = (
                        Ph::parse(status.phase.as_str()).expect("a phase the model knows"),
                        Keeps::of(status.kept.as_ref()),
                    );
                    if plan.stale {
                        let mut cache = cache.lock().unwrap();
                        let entry = cache.entry(id).or_insert((phase, false));
                        entry.1 = !entry.1;
                        if entry.1 {
                            phase = std::mem::replace(&mut entry.0, phase);
                        } else {
                            entry.0 = phase;
                        }
                    }
                    push(id, Op::Query(Some(phase)), invoked, Some(responded));
                }
                _ => {
                    let (began, ended) = (at(), at());
                    let (b, e) = (began.clone(), ended.clone());
                    let invoked = now_ns();
                    let revoked = recorder
                        .revoke_task_block(id, async move {
                            *b.lock().unwrap() = Some(now_ns());
                            tokio::time::sleep(pause).await;
                            *e.lock().unwrap() = Some(now_ns());
                            ok.then_some(()).ok_or(())
                        })
                        .await;
                    let responded = now_ns();
                    let (began, ended) = (*began.lock().unwrap(), *ended.lock().unwrap());
                    match revoked {
                        Ok(()) | Err(RevokeError::RevokeTaskError(())) => {
                            let (Some(began), Some(ended)) = (began, ended) else {
                                unreachable!("the revoke future ran")
                            };
                            push(id, Op::RevokeBegin(Some(Ok(()))), invoked, Some(began));
                            push(id, Op::RevokeEnd(ok), ended, Some(responded));
                        }
                        Err(RevokeError::NotSuccess(_)) => push(
                            id,
                            Op::RevokeBegin(Some(Err("not_success".into()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(RevokeError::Revoking(_)) => push(
                            id,
                            Op::RevokeBegin(Some(Err("revoking".into()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(_) => {
                            // Lost, or a store error: the begin may have been made, and
                            // then the end (of the revoke future, if it returned) or
                            // the lease's expiry.
                            push(id, Op::RevokeBegin(None), invoked, began);
                            if let Some(ended) = ended {
                                push(id, Op::RevokeEnd(ok), ended, None);
                            }
                            push(id, Op::Expire, invoked, None);
                        }
                    }
                }
            }
        }
        for end in ends {
            let _ = end.await;
        }
    }
}

#[cfg(feature = "redis")]
use recording::histories;

#[cfg(not(feature = "redis"))]
async fn serve() {
    panic!("the worker processes need the `redis` feature");
}
