//! Linearizability across processes: three worker processes (this test binary started
//! again, `tests/support/worker.rs`) on one Redis server record histories of launches,
//! their ends, status reads and revokes on shared ids, timed on `CLOCK_MONOTONIC`,
//! which all processes of the machine share. The test merges them and checks each id's
//! history against the sequential model (`tests/support/linear.rs`), also while one
//! worker is paused past its lease again and again. The checker catches an injected
//! fault: status reads answered from a lagging copy.
//!
//! A finish that ignores its token is not caught here: a paused holder learns that its
//! lease is gone before its future's end (its renewal fails first), so its stale end
//! is the worker-lost move that an expiry would make, which the model must allow. The
//! seam's state-machine test and `tests/redis_faults.rs`, whose stale holder ends with
//! its own outcome, catch that fault.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/worker.rs"]
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::timing::MACHINE;
use redis_server::RedisServer;
use worker::linear::{check_id, Event, Op};
use worker::Worker;

#[test]
#[ignore = "the entry point of the worker processes that the other tests start"]
fn worker_entry() {
    worker::entry();
}

const PROCESSES: usize = 3;
/// Ids per history: few, so that the processes' operations meet on them.
const IDS: u64 = 2;
/// Operations per client (two clients per process) per history.
const OPS: u64 = 5;
/// The time between two histories' starts, in ms: room for one history's operations.
const SLOT_MS: u64 = 15;

/// What a run found.
#[derive(Debug, Default)]
struct Found {
    histories: u64,
    events: usize,
    /// Events of operations that overlapped one from another process on the same id.
    cross_process_overlaps: usize,
    /// Events saying a lease may have run out (holders that lost theirs).
    expiries: usize,
    /// How many times the first worker was paused.
    pauses: u32,
    violations: Vec<String>,
    took: Duration,
}

/// How a run is disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faults {
    None,
    /// Every other query of an id is answered with the previous answer.
    StaleReads,
    /// The first worker is paused (SIGSTOP) past its lease again and again.
    Pauses,
}

/// One run at a time: three runs at once on a 2-core machine would leave their
/// processes little time to meet on shared ids.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(histories: u64, seed: u64, faults: Faults) -> Found {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let server = RedisServer::start();
    let stale = faults == Faults::StaleReads;
    let namespace = format!("lin-{faults:?}");
    // Short under pauses, so that a pause outlasts it.
    let pauses = faults == Faults::Pauses;
    let lease = if pauses {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(5)
    };
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|i| {
            let name = format!("p{i}");
            Worker::start(&name, &server.url(), &namespace, lease, None)
        })
        .collect();
    let pauser = pauses.then(|| {
        let (pid, stop) = (
            workers[0].pid(),
            std::sync::Arc::new(AtomicBool::new(false)),
        );
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pauses = 0;
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(400));
                worker::send_signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(700));
                worker::send_signal(pid, "CONT");
                pauses += 1;
            }
            pauses
        });
        (stop, thread)
    });
    let start = MACHINE.now() + 300_000_000;
    for (i, w) in workers.iter_mut().enumerate() {
        w.send(&format!(
            "hists {histories} 0 {IDS} {OPS} {start} {SLOT_MS} {} {}",
            seed + i as u64,
            u8::from(stale)
        ));
    }
    let limit = Duration::from_millis(histories * SLOT_MS) + Duration::from_secs(60);
    let mut by_id: BTreeMap<(u64, u64), Vec<Event>> = BTreeMap::new();
    let mut found = Found {
        histories,
        ..Found::default()
    };
    let mut pauser = pauser;
    for (i, w) in workers.iter_mut().enumerate() {
        for line in w.collect_until("hists-done", limit) {
            let Some(event) = Event::parse(&line) else {
                panic!("worker {}: not an event: {line:?}", w.name());
            };
            found.events += 1;
            found.expiries += usize::from(event.op == Op::Expire);
            by_id
                .entry((event.history, event.id))
                .or_default()
                .push(event);
        }
        // The paused worker is done: stop pausing it (the pauser's last pause ends
        // with a SIGCONT).
        if i == 0 {
            if let Some((stop, thread)) = pauser.take() {
                stop.store(true, Ordering::SeqCst);
                found.pauses = thread.join().expect("the pauser");
            }
        }
    }
    for ((history, id), events) in &by_id {
        found.cross_process_overlaps += events
            .iter()
            .filter(|a| {
                events.iter().any(|b| {
                    a.client.split('.').next() != b.client.split('.').next()
                        && b.invoked < a.responded.unwrap_or(u64::MAX)
                        && a.invoked < b.responded.unwrap_or(u64::MAX)
                })
            })
            .count();
        if let Err(report) = check_id(events) {
            found
                .violations
                .push(format!("history {history}, id {id}: {report}"));
        }
    }
    found.took = started.elapsed();
    found
}

fn kinds(found: &Found) -> String {
    format!(
        "{} histories, {} events, {} overlapping another process's, {} pauses, {} possible expiries, {:?}",
        found.histories,
        found.events,
        found.cross_process_overlaps,
        found.pauses,
        found.expiries,
        found.took
    )
}

/// Prints what `found` ran and fails on its first violation.
fn assert_linearizable(found: &Found) {
    println!("{}", kinds(found));
    assert!(
        found.violations.is_empty(),
        "{} of the ids' histories are not linearizable; the first:\n{}",
        found.violations.len(),
        found.violations[0]
    );
}

#[test]
fn histories_of_three_processes_are_linearizable() {
    let found = run(1_000, 1, Faults::None);
    assert_linearizable(&found);
    // The run must have exercised what it checks.
    assert!(found.events > 1_000 * 10, "{}", kinds(&found));
    assert!(found.cross_process_overlaps > 500, "{}", kinds(&found));
}

#[test]
#[ignore = "long: 10,000 histories (about three minutes); run with --ignored"]
fn long_run_of_histories_across_processes() {
    let found = run(10_000, 1_000, Faults::None);
    assert_linearizable(&found);
}

#[test]
fn the_checker_catches_reads_from_a_lagging_copy() {
    let found = run(300, 7, Faults::StaleReads);
    println!("{}; {} violations", kinds(&found), found.violations.len());
    assert!(
        !found.violations.is_empty(),
        "300 histories with stale reads all passed the check"
    );
    println!("the first:\n{}", found.violations[0]);
    // What the fault produced is a stale read, not something else.
    assert!(found.violations[0].contains("Query"));
}

#[test]
fn histories_with_a_worker_paused_past_its_lease_are_linearizable() {
    let found = run(400, 50, Faults::Pauses);
    assert_linearizable(&found);
    assert!(found.pauses >= 2, "{}", kinds(&found));
    assert!(found.expiries > 0, "no lease ran out: {}", kinds(&found));
}

#[test]
fn events_round_trip_through_their_lines() {
    let e = Event {
        history: 3,
        client: "p1.0".into(),
        id: 5,
        op: Op::RevokeBegin(Some(Err("not_success".into()))),
        invoked: 10,
        responded: None,
    };
    assert_eq!(Event::parse(&e.to_string()), Some(e));
}
