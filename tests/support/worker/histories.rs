//! The `hists` command: histories of launches, their ends, status reads and revokes
//! on shared ids, recorded by two clients of this worker and timed on the machine's
//! clock, so that the test can merge them with the other workers' and check them.

use super::linear::{Event, Keeps, Op, Ph, Read};
use super::serving::say;
use super::*;
use crate::common::timing::{Log, MACHINE};
use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
use async_tasks_recorder::{LaunchError, LaunchOptions, TaskError};

/// What a `hists` command asks for: `count` histories, the k-th on the ids
/// `first + k * ids ..`, started at `start_ns + k * slot_ms` on the shared clock, each
/// of two clients making `ops` operations; `stale` answers every other query of an id
/// with the previous answer (the injected fault: a read from a lagging copy).
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) count: u64,
    pub(super) first: u64,
    pub(super) ids: u64,
    pub(super) ops: u64,
    pub(super) start_ns: u64,
    pub(super) slot_ms: u64,
    pub(super) seed: u64,
    pub(super) stale: bool,
}

/// The last answer of each id's status reads, and whether the next one is stale.
type Cache = Arc<Mutex<HashMap<u64, (Read, bool)>>>;

pub(super) async fn histories(recorder: &RedisRecorder<u64>, plan: Plan) {
    let me = std::env::var("ATR_WORKER").unwrap_or_default();
    let cache: Cache = Arc::default();
    for k in 0..plan.count {
        let start = plan.start_ns + k * plan.slot_ms * 1_000_000;
        if let Some(wait) = start.checked_sub(MACHINE.now()) {
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
        let log: Arc<Log<Event>> = Arc::default();
        let mut clients = Vec::new();
        for c in 0..2u64 {
            let rng = plan.seed ^ (k << 8 | c).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let client = Client {
                history: k,
                me: format!("{me}.{c}"),
                log: log.clone(),
            };
            clients.push(tokio::spawn(client.run(
                recorder.clone(),
                plan,
                rng | 1,
                cache.clone(),
            )));
        }
        for c in clients {
            let _ = c.await;
        }
        for e in log.take() {
            say(e);
        }
    }
    say("hists-done");
}

/// One client of a history: who it is, and where its events go.
#[derive(Clone)]
struct Client {
    history: u64,
    me: String,
    log: Arc<Log<Event>>,
}

impl Client {
    /// Logs an operation on `id`, invoked at `invoked` and answered at `responded`
    /// (`None`: no answer came).
    fn push(&self, id: u64, op: Op, invoked: u64, responded: Option<u64>) {
        self.log.push(Event {
            history: self.history,
            client: self.me.clone(),
            id,
            op,
            invoked,
            responded,
        });
    }

    async fn run(self, recorder: RedisRecorder<u64>, plan: Plan, mut rng: u64, cache: Cache) {
        let base = plan.first + self.history * plan.ids;
        let mut ends = Vec::new();
        for _ in 0..plan.ops {
            let id = base + step(&mut rng) % plan.ids;
            let ok = step(&mut rng) % 10 < 7;
            let pause = Duration::from_micros(step(&mut rng) % 2_000);
            match step(&mut rng) % 3 {
                0 => {
                    let returned = MACHINE.mark();
                    let mark = returned.clone();
                    // Every launch keeps its end: the reads check what was kept.
                    let task = async move {
                        tokio::time::sleep(pause).await;
                        mark.set();
                        ok.then_some("done").ok_or("failed")
                    };
                    let (span, launched) = MACHINE
                        .timed(|| recorder.launch_kept(id, task, LaunchOptions::new()))
                        .await;
                    let (invoked, responded) = (span.invoked, span.returned);
                    match launched {
                        Ok(handle) => {
                            self.push(id, Op::Launch(Some(Ok(()))), invoked, Some(responded));
                            let client = self.clone();
                            ends.push(tokio::spawn(async move {
                                let out = handle.await;
                                let done = MACHINE.now();
                                let responded_at = responded;
                                let responded = match out {
                                    Ok(_) | Err(TaskError::Failed(_)) => Some(done),
                                    // The lease was lost: the end may not have been
                                    // recorded, and the lease's expiry may have made it.
                                    _ => None,
                                };
                                if responded.is_none() {
                                    client.push(id, Op::Expire, responded_at, None);
                                }
                                // A future that never returned (stopped when its lease
                                // was lost) made no finish.
                                if let Some(invoked) = returned.get() {
                                    client.push(id, Op::Finish(ok), invoked, responded);
                                }
                            }));
                        }
                        Err(LaunchError::Refused(state, _)) => self.push(
                            id,
                            Op::Launch(Some(Err(state.as_str().to_string()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(_) => self.push(id, Op::Launch(None), invoked, None),
                    }
                }
                1 => {
                    let (span, read) = MACHINE.timed(|| recorder.status(&id)).await;
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
                    let op = Op::Query(Some(phase));
                    self.push(id, op, span.invoked, Some(span.returned));
                }
                _ => {
                    let (began, ended) = (MACHINE.mark(), MACHINE.mark());
                    let (b, e) = (began.clone(), ended.clone());
                    let revoke = async move {
                        b.set();
                        tokio::time::sleep(pause).await;
                        e.set();
                        ok.then_some(()).ok_or(())
                    };
                    let (span, revoked) = MACHINE
                        .timed(|| recorder.revoke_task_block(id, revoke))
                        .await;
                    let (invoked, responded) = (span.invoked, span.returned);
                    let (began, ended) = (began.get(), ended.get());
                    match revoked {
                        Ok(()) | Err(RevokeError::RevokeTaskError(())) => {
                            let (Some(began), Some(ended)) = (began, ended) else {
                                unreachable!("the revoke future ran")
                            };
                            self.push(id, Op::RevokeBegin(Some(Ok(()))), invoked, Some(began));
                            self.push(id, Op::RevokeEnd(ok), ended, Some(responded));
                        }
                        Err(RevokeError::NotSuccess(_)) => self.push(
                            id,
                            Op::RevokeBegin(Some(Err("not_success".into()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(RevokeError::Revoking(_)) => self.push(
                            id,
                            Op::RevokeBegin(Some(Err("revoking".into()))),
                            invoked,
                            Some(responded),
                        ),
                        Err(_) => {
                            // Lost, or a store error: the begin may have been made, and
                            // then the end (of the revoke future, if it returned) or
                            // the lease's expiry.
                            self.push(id, Op::RevokeBegin(None), invoked, began);
                            if let Some(ended) = ended {
                                self.push(id, Op::RevokeEnd(ok), ended, None);
                            }
                            self.push(id, Op::Expire, invoked, None);
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
