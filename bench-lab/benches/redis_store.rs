//! The Redis store against floors that use the same client (`redis` crate,
//! `ConnectionManager`), the same server and the same concurrency, in interleaved
//! rounds (each round runs both sides, in alternating order, and the ratio is taken
//! per round).
//!
//! - `lifecycle`: per id, launch a task that returns `Ok` at once and wait for its end
//!   (`launch_block`), then read `Success` (`query_task_state`): three round trips.
//!   Floor: `SET id W NX`, `SET id S`, `GET id`, the fewest round trips that record
//!   the same (a launch that refuses duplicates, a finish, a read).
//! - `query_hit`: `query_task_state` of `Success` ids; floor: `GET` of one key each.
//! - `wait`: from the moment a task's future returns on one recorder to a `wait` on
//!   another recorder (its own connection and subscription, standing for another
//!   process) waking: p50 and p99.
//! - `memory`: the server's `used_memory` per `Success` record over
//!   `ATR_RB_RECORDS` records (default 100,000), and per tombstone (the same records
//!   after a 1 ms `success_ttl`), against `SET id S` per id.
//! - `scaling`: `lifecycle` run by 1, 2 and 4 processes at once (this bench started
//!   again as workers, each with its own recorder, or its own connection for the
//!   floor, and `ATR_RB_LANES` operations in flight), all on the one server: the
//!   tasks of all processes per second of wall time, from the go signal to the last
//!   process done.
//!
//! The server is started by the bench on a free loopback port with the settings the
//! guarantees need (`appendonly yes`, `appendfsync always`, see
//! tests/support/redis_server.rs): every write waits for a disk sync, on both sides.
//! Settings: `ATR_RB_ROUNDS` (default 7), `ATR_RB_TASKS` (ids per round, default
//! 2,000), `ATR_RB_LANES` (operations in flight, default 32), `ATR_RB_RECORDS`;
//! `ATR_BENCH_SMOKE=1`, or a run as a test (`cargo test --benches`), uses tiny sizes.
//!
//! Run: `cargo bench -p atr_bench_lab --features redis --bench redis_store`.

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::TaskState;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use redis_server::RedisServer;

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tiny sizes: `ATR_BENCH_SMOKE` set (not `0`), or run as a test (`cargo test
/// --benches` passes no `--bench`).
fn smoke() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    std::env::var("ATR_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0") || !bench_mode
}

/// Runs `op` for every id in `first..first + n`, `lanes` at a time; returns the time.
async fn lanes<F, Fut>(first: u64, n: u64, lanes: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(first));
    let end = first + n;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..lanes {
        let (next, op) = (next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= end {
                    break;
                }
                op(id).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a lane panicked");
    }
    started.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn used_memory(conn: &mut ConnectionManager) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

/// The environment of a worker process of `scaling`.
const WORKER: &str = "ATR_RB_WORKER";

/// A worker of `scaling`: builds its side (`ours` or `floor`) on the server, says
/// `ready`, runs the lifecycle of its ids when a line comes on stdin, says `done`.
fn worker(side: &str) {
    let get = |name: &str| std::env::var(name).expect("a worker setting");
    let url = get("ATR_RB_URL");
    let first: u64 = get("ATR_RB_FIRST").parse().expect("first id");
    let n: u64 = get("ATR_RB_N").parse().expect("ids");
    let in_flight = var("ATR_RB_LANES", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let go = || {
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("the go line");
        };
        if side == "ours" {
            let rec = recorder(&url, "scaling", None).await;
            go();
            lanes(first, n, in_flight, move |id| {
                ours_lifecycle(rec.clone(), id)
            })
            .await;
        } else {
            let client = redis::Client::open(url.as_str()).expect("url");
            let conn = ConnectionManager::new(client).await.expect("connection");
            go();
            lanes(first, n, in_flight, move |id| {
                floor_lifecycle(conn.clone(), id)
            })
            .await;
        }
    });
    println!("done");
}

/// `processes` workers of `side` at once, `n` ids each from `first`: tasks per second.
fn run_workers(url: &str, side: &str, processes: u64, first: u64, n: u64) -> f64 {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    struct Worker {
        child: std::process::Child,
        lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    }
    impl Drop for Worker {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
    let expect = |w: &mut Worker, what: &str| loop {
        let line = w
            .lines
            .next()
            .expect("the worker's output")
            .expect("a line");
        if line.trim() == what {
            break;
        }
    };
    let exe = std::env::current_exe().expect("the bench's path");
    let mut workers: Vec<Worker> = (0..processes)
        .map(|i| {
            let mut child = Command::new(&exe)
                .env(WORKER, side)
                .env("ATR_RB_URL", url)
                .env("ATR_RB_FIRST", (first + i * n).to_string())
                .env("ATR_RB_N", n.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("a worker starts");
            let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            Worker { child, lines }
        })
        .collect();
    for w in &mut workers {
        expect(w, "ready");
    }
    let started = Instant::now();
    for w in &mut workers {
        let stdin = w.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .expect("go");
    }
    for w in &mut workers {
        expect(w, "done");
    }
    (processes * n) as f64 / started.elapsed().as_secs_f64()
}

/// One launch, its end, and a read of `Success`: three round trips.
async fn ours_lifecycle(rec: RedisRecorder<u64>, id: u64) {
    rec.launch_block(id, async { Ok::<(), ()>(()) })
        .await
        .expect("launch");
    let s = rec.query_task_state(&id).await.expect("query");
    assert_eq!(s, TaskState::Success);
}

/// The floor of a lifecycle: `SET id W NX`, `SET id S`, `GET id`.
async fn floor_lifecycle(mut conn: ConnectionManager, id: u64) {
    let key = format!("f:{id}");
    let set: bool = redis::cmd("SET")
        .arg(&key)
        .arg("W")
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .expect("SET NX")
        .is_some();
    assert!(set);
    let () = conn.set(&key, "S").await.expect("SET");
    let v: String = conn.get(&key).await.expect("GET");
    assert_eq!(v, "S");
}

async fn recorder(url: &str, namespace: &str, ttl: Option<Duration>) -> RedisRecorder<u64> {
    let mut b = RedisRecorder::builder(url)
        .namespace(namespace)
        .lease(Duration::from_secs(30));
    if let Some(ttl) = ttl {
        b = b.success_ttl(ttl);
    }
    b.build().await.expect("the recorder builds")
}

/// One table row: both sides' rates per round and the ratio's median and range.
struct Row {
    name: &'static str,
    unit: &'static str,
    ours: Vec<f64>,
    floor: Vec<f64>,
}

impl Row {
    /// The row as one line of the report.
    fn line(&self) -> String {
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.floor)
            .map(|(o, f)| o / f)
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        format!(
            "{:<10} ours {:>9.0} {}  floor {:>9.0}  ours/floor median {:.3} (rounds {:.3} .. {:.3}, n = {})\n",
            self.name,
            median(self.ours.clone()),
            self.unit,
            median(self.floor.clone()),
            median(ratios.clone()),
            lo,
            hi,
            ratios.len()
        )
    }
}

/// How the compared workloads run: rounds, ids per round, operations in flight.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: u64,
    tasks: u64,
    lanes: u64,
}

/// Runs `ours` and `floor` over the ids of each round (a fresh range per round), in
/// an order that alternates from round to round; returns their rates.
async fn compare<A, FA, B, FB>(
    plan: Plan,
    (name, unit): (&'static str, &'static str),
    ours: A,
    floor: B,
) -> Row
where
    A: Fn(u64) -> FA + Clone + Send + 'static,
    FA: Future<Output = ()> + Send,
    B: Fn(u64) -> FB + Clone + Send + 'static,
    FB: Future<Output = ()> + Send,
{
    let mut row = Row {
        name,
        unit,
        ours: vec![],
        floor: vec![],
    };
    for round in 0..plan.rounds {
        let base = 1_000_000 * (round + 1);
        for side in [round % 2, 1 - round % 2] {
            let (took, rates) = if side == 0 {
                let t = lanes(base, plan.tasks, plan.lanes, ours.clone()).await;
                (t, &mut row.ours)
            } else {
                let t = lanes(base, plan.tasks, plan.lanes, floor.clone()).await;
                (t, &mut row.floor)
            };
            rates.push(plan.tasks as f64 / took.as_secs_f64());
        }
    }
    row
}

/// Prints a line of the report and keeps it for the file.
fn report(out: &mut String, line: String) {
    print!("{line}");
    out.push_str(&line);
}

/// Records `records` successes, ids `0..records`.
async fn fill(rec: &RedisRecorder<u64>, records: u64) {
    let rec = rec.clone();
    lanes(0, records, 64, move |id| {
        let rec = rec.clone();
        async move {
            rec.launch_block(id, async { Ok::<(), ()>(()) })
                .await
                .expect("launch");
        }
    })
    .await;
}

fn main() {
    if let Ok(side) = std::env::var(WORKER) {
        return worker(&side);
    }
    let small = smoke();
    let rounds = if small { 1 } else { var("ATR_RB_ROUNDS", 7) };
    let tasks = if small {
        50
    } else {
        var("ATR_RB_TASKS", 2_000)
    };
    let plan = Plan {
        rounds,
        tasks,
        lanes: var("ATR_RB_LANES", 32),
    };
    let records = if small {
        200
    } else {
        var("ATR_RB_RECORDS", 100_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = RedisServer::start();
    let url = server.url();
    let mut out = String::new();
    runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let floor = ConnectionManager::new(client).await.expect("floor connection");
        let ours = recorder(&url, "bench", None).await;

        // lifecycle
        let rec = ours.clone();
        let conn = floor.clone();
        let row = compare(
            plan,
            ("lifecycle", "tasks/s"),
            move |id| ours_lifecycle(rec.clone(), id),
            move |id| floor_lifecycle(conn.clone(), id),
        )
        .await;
        report(&mut out, row.line());

        let mut stats_conn = floor.clone();
        let phase_stats = |name: &'static str, conn: &mut ConnectionManager| {
            let mut conn = conn.clone();
            async move {
                let info: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut conn)
                    .await
                    .expect("INFO commandstats");
                let mut line = format!("server     during {name}:");
                for l in info.lines() {
                    if let Some((cmd, rest)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) {
                        if ["fcall", "get", "set", "exec", "publish"].contains(&cmd) {
                            let per = rest
                                .split(',')
                                .find_map(|f| f.strip_prefix("usec_per_call="))
                                .unwrap_or("?");
                            line.push_str(&format!(" {cmd} {per} µs/call;"));
                        }
                    }
                }
                let () = redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query_async(&mut conn)
                    .await
                    .expect("CONFIG RESETSTAT");
                line.push('\n');
                line
            }
        };
        report(&mut out, phase_stats("lifecycle", &mut stats_conn).await);

        // query_hit, on the ids the lifecycle rounds left Success.
        let rec = ours.clone();
        let conn = floor.clone();
        let row = compare(
            plan,
            ("query_hit", "reads/s"),
            move |id| {
                let rec = rec.clone();
                async move {
                    let s = rec.query_task_state(&id).await.expect("query");
                    assert_eq!(s, TaskState::Success);
                }
            },
            move |id| {
                let mut conn = conn.clone();
                async move {
                    let v: String = conn.get(format!("f:{id}")).await.expect("GET");
                    assert_eq!(v, "S");
                }
            },
        )
        .await;
        report(&mut out, row.line());
        report(&mut out, phase_stats("query_hit", &mut stats_conn).await);

        // wait: a finish on one recorder, the waiter woken on another.
        let other = recorder(&url, "bench", None).await;
        let samples = if small { 10 } else { 300 };
        let mut latencies = Vec::new();
        for i in 0..samples {
            let id = 900_000_000 + i;
            let (release, released) = tokio::sync::oneshot::channel::<()>();
            let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<Instant>();
            ours.launch(id, async move {
                let _ = released.await;
                let _ = ended_tx.send(Instant::now());
                Ok::<(), ()>(())
            })
            .await
            .expect("launch");
            let waiter = tokio::spawn({
                let other = other.clone();
                async move {
                    other.wait(&id).await.expect("wait");
                    Instant::now()
                }
            });
            // Let the waiter register and read Working.
            tokio::time::sleep(Duration::from_millis(5)).await;
            release.send(()).expect("release");
            let ended = ended_rx.await.expect("the task ended");
            let woken = waiter.await.expect("waiter");
            latencies.push(woken.saturating_duration_since(ended));
        }
        let line = format!(
            "wait       finish -> waiter on another connection: p50 {:?}, p99 {:?} ({} samples)\n",
            percentile(latencies.clone(), 0.5),
            percentile(latencies, 0.99),
            samples
        );
        report(&mut out, line);

        // memory
        let mut conn = floor.clone();
        let before = used_memory(&mut conn).await;
        let mem = recorder(&url, "mem", None).await;
        fill(&mem, records).await;
        let after_ours = used_memory(&mut conn).await;
        let c = floor.clone();
        lanes(0, records, 64, move |id| {
            let mut c = c.clone();
            async move {
                let () = c.set(format!("m:{id}"), "S").await.expect("SET");
            }
        })
        .await;
        let after_floor = used_memory(&mut conn).await;
        let tomb = recorder(&url, "tomb", Some(Duration::from_millis(1))).await;
        fill(&tomb, records).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A listing makes every due expiry move: all are tombstones now.
        let listed = tomb.ids_in_state(TaskState::Success).await.expect("list");
        assert_eq!(listed.len() as u64, records);
        let after_tomb = used_memory(&mut conn).await;
        let per = |bytes: i64| bytes as f64 / records as f64;
        let (ours_b, floor_b, tomb_b) = (
            per(after_ours - before),
            per(after_floor - after_ours),
            per(after_tomb - after_floor),
        );
        let line = format!(
            "memory     per Success record {ours_b:.1} B, per tombstone {tomb_b:.1} B, per `SET id S` {floor_b:.1} B: ratios {:.2} and {:.2} ({records} records, u64 ids)\n",
            ours_b / floor_b,
            tomb_b / floor_b
        );
        report(&mut out, line);
    });
    // scaling: the lifecycle by 1, 2 and 4 processes at once, ids of their own.
    let mut ours_one = 0.0;
    for processes in [1u64, 2, 4] {
        let mut row = Row {
            name: match processes {
                1 => "scale 1p",
                2 => "scale 2p",
                _ => "scale 4p",
            },
            unit: "tasks/s",
            ours: vec![],
            floor: vec![],
        };
        for round in 0..plan.rounds {
            let base = 10_000_000_000 * processes + 100_000_000 * (round + 1);
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let rate = run_workers(&url, "ours", processes, base, plan.tasks);
                    row.ours.push(rate);
                } else {
                    let rate = run_workers(&url, "floor", processes, base, plan.tasks);
                    row.floor.push(rate);
                }
            }
        }
        let ours = median(row.ours.clone());
        if processes == 1 {
            ours_one = ours;
        }
        let mut line = row.line();
        line.pop();
        line.push_str(&format!("; ours {:.2}x of 1 process\n", ours / ours_one));
        report(&mut out, line);
    }
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/redis_store_bench.txt", &out);
    drop(server);
}
