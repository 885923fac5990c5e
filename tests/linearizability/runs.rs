//! Runs of many histories on one store, each recorded and checked, with totals of
//! what they exercised; and hunts for an injected fault, which must fail the check.

use std::fmt;
use std::sync::Once;
#[cfg(feature = "redis")]
use std::time::Duration;

use crate::checker::{check_on, Checked};
use crate::clients::record_history;
#[cfg(feature = "redis")]
use crate::common::bounded;
use crate::history::{Answer, Call, End, Event, Leaves, PLANNED_PANIC};
use crate::model::{self, Fault, Subject};
#[cfg(feature = "redis")]
use crate::redis_server;
use crate::workloads::{Workload, WORKLOADS};

/// The runtime the in-memory histories are recorded on: two workers, and time for
/// the timeouts and the hang guards.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a Tokio runtime")
}

/// Totals over a run of histories.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) histories: u64,
    pub(crate) operations: usize,
    pub(crate) configurations: usize,
    pub(crate) max_configurations: usize,
    /// Operations that overlap in time with an operation of another client.
    pub(crate) overlapping: usize,
    /// Of the new operations: waits, cancels, cancels that answered `true`, timed
    /// launches that returned `Ok`, timeouts that fired.
    pub(crate) waits: usize,
    pub(crate) cancels: usize,
    pub(crate) cancelled: usize,
    pub(crate) timed: usize,
    pub(crate) timed_out: usize,
    /// Of the features read through `status`: status reads, ends that kept a value,
    /// progress reports, failed attempts that left their launch waiting to retry.
    pub(crate) statuses: usize,
    /// Status reads that saw a queued attempt.
    pub(crate) queued: usize,
    pub(crate) kept: usize,
    pub(crate) reports: usize,
    pub(crate) retries: usize,
}

impl Totals {
    fn add(&mut self, history: &[Event], checked: Checked) {
        self.histories += 1;
        self.operations += history.len();
        self.configurations += checked.configurations;
        self.max_configurations = self.max_configurations.max(checked.configurations);
        self.overlapping += overlapping(history);
        for e in history {
            let answer = e.response.map(|(_, answer)| answer);
            match (e.call, answer) {
                (Call::Wait(_), _) => self.waits += 1,
                (Call::Cancel(_), cancelled) => {
                    self.cancels += 1;
                    self.cancelled += usize::from(cancelled == Some(Answer::Cancelled(true)));
                }
                (Call::LaunchWith(_, Some(_)), Some(Answer::Launch(Ok(())))) => self.timed += 1,
                (Call::Finish(_, End::TimedOut, _), _) => self.timed_out += 1,
                (Call::Finish(_, end, Leaves::Kept(_)), _) if end != End::TimedOut => {
                    self.kept += 1;
                }
                (Call::Finish(_, End::Err | End::Panic, Leaves::Retry), _) => self.retries += 1,
                (Call::Progress(..), _) => self.reports += 1,
                (Call::Status(_, queued), _) => {
                    self.statuses += 1;
                    self.queued += usize::from(queued);
                }
                _ => {}
            }
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} histories, {} operations ({} overlapping another client's; {} waits, {} \
             cancels of which {} cancelled, {} timed launches of which {} timed out; {} \
             status reads ({} of a queued attempt), {} kept ends, {} progress reports, {} \
             retries), {} \
             configurations searched (at most {} in one)",
            self.histories,
            self.operations,
            self.overlapping,
            self.waits,
            self.cancels,
            self.cancelled,
            self.timed,
            self.timed_out,
            self.statuses,
            self.queued,
            self.kept,
            self.reports,
            self.retries,
            self.configurations,
            self.max_configurations,
        )
    }
}

/// How many operations of `history` overlap in time with an operation of another
/// client.
pub(crate) fn overlapping(history: &[Event]) -> usize {
    let span = |e: &Event| (e.invoked, e.response.map(|(at, _)| at));
    history
        .iter()
        .filter(|a| {
            let (a0, a1) = span(a);
            history.iter().any(|b| {
                let (b0, b1) = span(b);
                a.client != b.client && b1.is_none_or(|b1| a0 <= b1) && a1.is_none_or(|a1| b0 <= a1)
            })
        })
        .count()
}

/// Which store the histories are recorded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    /// A server started for the run; every history has a namespace of its own.
    #[cfg(feature = "redis")]
    Redis,
}

/// What a run of histories needs: the runtime, and the server on Redis.
struct Bench {
    rt: tokio::runtime::Runtime,
    backend: Backend,
    #[cfg(feature = "redis")]
    server: Option<redis_server::RedisServer>,
}

impl Bench {
    fn new(backend: Backend) -> Bench {
        Bench {
            rt: match backend {
                Backend::Memory => runtime(),
                // The Redis client needs the I/O driver too.
                #[cfg(feature = "redis")]
                Backend::Redis => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a Tokio runtime"),
            },
            backend,
            #[cfg(feature = "redis")]
            server: (backend == Backend::Redis).then(redis_server::RedisServer::start),
        }
    }

    /// A fresh subject for history `seed`.
    fn subject(&self, fault: Fault, seed: u64, max_running: Option<usize>) -> Subject {
        #[cfg(not(feature = "redis"))]
        let _ = seed;
        match self.backend {
            Backend::Memory => {
                let mut builder = async_tasks_recorder::AsyncTasksRecorder::builder();
                if let Some(n) = max_running {
                    builder = builder.max_running(n);
                }
                Subject::on(model::Store::Memory(builder.build()), fault)
            }
            #[cfg(feature = "redis")]
            Backend::Redis => {
                let url = self.server.as_ref().expect("a server").url();
                // Two recorders with connections of their own, standing for two
                // replicas; the subject sends each call to the next one.
                let replicas = self.rt.block_on(async {
                    let mut replicas = Vec::new();
                    for _ in 0..2 {
                        let rec = bounded("the Redis recorder to build", {
                            let mut builder =
                                async_tasks_recorder::redis::RedisRecorder::builder(url.clone())
                                    .namespace(format!("h{seed}"))
                                    .lease(Duration::from_secs(30));
                            if let Some(n) = max_running {
                                builder = builder.max_running(n);
                            }
                            builder.build()
                        })
                        .await
                        .expect("the recorder builds on the test server");
                        replicas.push(rec);
                    }
                    replicas
                });
                Subject::on(model::Store::redis(replicas), fault)
            }
        }
    }

    fn record(&self, fault: Fault, w: Workload, seed: u64) -> Vec<Event> {
        let subject = self.subject(fault, seed, w.max_running);
        self.rt.block_on(record_history(subject, w, seed))
    }
}

/// Records and checks `histories` histories of the real recorder (the workloads in
/// turn); panics with a report at the first one that is not linearizable.
pub(crate) fn run_correct(histories: u64, first_seed: u64) -> Totals {
    run_correct_on(Backend::Memory, histories, first_seed)
}

pub(crate) fn run_correct_on(backend: Backend, histories: u64, first_seed: u64) -> Totals {
    quiet_planned_panics();
    let bench = Bench::new(backend);
    let mut totals = Totals::default();
    for n in 0..histories {
        let seed = first_seed + n;
        let w = WORKLOADS[(n % WORKLOADS.len() as u64) as usize];
        let history = bench.record(Fault::None, w, seed);
        match check_on(&history, w.max_running.is_some()) {
            Ok(checked) => totals.add(&history, checked),
            Err(report) => panic!(
                "history {n} (seed {seed}, workload {}) of the real recorder on {backend:?}:\n{report}",
                w.name
            ),
        }
    }
    totals
}

/// Records histories of a faulty subject until one fails the check; returns after how
/// many, with the report, or `None` if all of `attempts` passed.
pub(crate) fn hunt(fault: Fault, w: Workload, attempts: u64) -> Option<(u64, String)> {
    hunt_on(Backend::Memory, fault, w, attempts)
}

pub(crate) fn hunt_on(
    backend: Backend,
    fault: Fault,
    w: Workload,
    attempts: u64,
) -> Option<(u64, String)> {
    quiet_planned_panics();
    let bench = Bench::new(backend);
    (1..=attempts).find_map(|n| {
        let history = bench.record(fault, w, n);
        check_on(&history, w.max_running.is_some())
            .err()
            .map(|report| (n, report))
    })
}

/// Keeps the planned panics from printing; every other panic prints as usual.
fn quiet_planned_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(PLANNED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// The new operations did occur, with both answers of cancel, and the features that
/// `status` reads: kept values, retries, and (where reads see them at once: not on
/// Redis) progress reports.
pub(crate) fn assert_exercised(totals: &Totals, backend: Backend) {
    assert!(totals.waits > 0, "no waits: {totals}");
    assert!(
        totals.cancelled > 0 && totals.cancelled < totals.cancels,
        "cancels did not answer both ways: {totals}"
    );
    assert!(totals.timed_out > 0, "no timeout fired: {totals}");
    assert!(
        totals.statuses > 0 && totals.queued > 0 && totals.kept > 0 && totals.retries > 0,
        "no status reads, queued attempts, kept values or retries: {totals}"
    );
    if backend == Backend::Memory {
        assert!(totals.reports > 0, "no progress reports: {totals}");
    }
}
