//! The worker's side: it builds its recorder from the environment [`Worker::start`]
//! set, reads commands from its stdin, and answers each on its stdout.

use super::histories::{histories, Plan};
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
        builder =
            builder.inject_fault(async_tasks_recorder::redis::InjectedFault::FinishIgnoresToken);
    }
    let recorder: RedisRecorder<u64> = builder.build().await.expect("the worker's recorder builds");
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
