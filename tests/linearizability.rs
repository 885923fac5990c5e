//! Linearizability check of the recorder.
//!
//! Concurrent histories are recorded on a multi-thread Tokio runtime: a few clients run
//! random operations on a handful of ids, and every operation is logged with the
//! instant it was invoked, the instant it returned, and its answer. A Wing & Gong
//! search with Lowe's memoization then looks for an order of the operations that
//! respects real time (an operation that returned before another was invoked comes
//! first) and that the sequential model in `tests/model` accepts, answer for answer.
//!
//! The operations are the launches (`launch`, `launch_with` with or without a
//! timeout, `launch_kept`, `launch_fenced` and `launch_retrying`), the queries and
//! counts, `status`, `wait` and `cancel`, and progress reports, on the in-memory store
//! and (with the `redis` feature) on two recorders of one Redis namespace. The same
//! harness runs against subjects with an injected fault, and the checker must report
//! them.
//!
//! The parts, in `tests/linearizability/`:
//! - `history`: the operations of a history, their answers, and what `status` is
//!   compared in;
//! - `spec`: the sequential specification the checker follows, with what `wait`,
//!   `cancel` and `status` mean in it;
//! - `checker`: the search, and the report of a history that fails it;
//! - `workloads`: the seeded mixes of operations;
//! - `gates`: the futures the clients launch and end by hand;
//! - `harness`: one history being recorded, each operation timed and logged, and the
//!   state changes that are not calls, logged as operations of their own;
//! - `clients`: the clients' random operations, and the drain at a history's end;
//! - `runs`: runs of many histories on a store, and the hunts for injected faults;
//! - `hand_written`: the checker on histories written by hand.

#[path = "linearizability/checker.rs"]
mod checker;
#[path = "linearizability/clients.rs"]
mod clients;
mod common;
#[path = "linearizability/gates.rs"]
mod gates;
#[path = "linearizability/hand_written.rs"]
mod hand_written;
#[path = "linearizability/harness.rs"]
mod harness;
#[path = "linearizability/history.rs"]
mod history;
mod model;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "linearizability/runs.rs"]
mod runs;
#[path = "linearizability/spec.rs"]
mod spec;
#[path = "linearizability/workloads.rs"]
mod workloads;

use std::time::Instant;

use model::Fault;
use runs::{assert_exercised, hunt, run_correct, Backend};
#[cfg(feature = "redis")]
use runs::{hunt_on, run_correct_on};
use workloads::{FEATURES, QUERIES, SUCCESSES, WAITS};

#[test]
fn histories_are_linearizable() {
    let started = Instant::now();
    let totals = run_correct(1000, 1);
    println!("{totals}, {:.2?}", started.elapsed());
    assert_eq!(totals.histories, 1000);
    assert_exercised(&totals, Backend::Memory);
}

/// `ATR_LIN_HISTORIES` sets the number of histories (default 10,000).
#[test]
#[ignore = "long: run with --release -- --ignored long_run"]
fn long_run() {
    let histories = std::env::var("ATR_LIN_HISTORIES")
        .ok()
        .map(|v| v.parse().expect("ATR_LIN_HISTORIES must be a number"))
        .unwrap_or(10_000);
    let started = Instant::now();
    let totals = run_correct(histories, 1_000_000);
    let elapsed = started.elapsed();
    println!(
        "long_run: linearizable: {totals}, in {:.2} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(totals.histories, histories);
    assert_exercised(&totals, Backend::Memory);
}

/// The same histories on the Redis recorder, against a server the test starts, with
/// the calls spread over two recorders standing for two replicas.
#[cfg(feature = "redis")]
#[test]
fn histories_on_redis_are_linearizable() {
    let started = Instant::now();
    let totals = run_correct_on(Backend::Redis, 300, 1);
    println!("redis: {totals}, {:.2?}", started.elapsed());
    assert_eq!(totals.histories, 300);
    assert_exercised(&totals, Backend::Redis);
}

/// `ATR_LIN_HISTORIES` sets the number of histories (default 10,000).
#[cfg(feature = "redis")]
#[test]
#[ignore = "long: run with --release --features redis -- --ignored long_run_on_redis"]
fn long_run_on_redis() {
    let histories = std::env::var("ATR_LIN_HISTORIES")
        .ok()
        .map(|v| v.parse().expect("ATR_LIN_HISTORIES must be a number"))
        .unwrap_or(10_000);
    let started = Instant::now();
    let totals = run_correct_on(Backend::Redis, histories, 1_000_000);
    println!(
        "long_run_on_redis: linearizable: {totals}, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(totals.histories, histories);
    assert_exercised(&totals, Backend::Redis);
}

#[cfg(feature = "redis")]
#[test]
fn checker_catches_stale_reads_on_redis() {
    let found = hunt_on(Backend::Redis, Fault::StaleRead, QUERIES, 300);
    let (after, report) = found.expect("300 Redis histories with stale reads all passed the check");
    println!("stale reads on Redis caught after {after} histories:\n{report}");
}

#[cfg(feature = "redis")]
#[test]
fn checker_catches_double_success_on_redis() {
    let found = hunt_on(Backend::Redis, Fault::DoubleSuccess, SUCCESSES, 300);
    let (after, report) = found.expect("300 Redis histories with double successes all passed");
    println!("double success on Redis caught after {after} histories:\n{report}");
}

/// Stale `status` reads: the kept values, progress and retries that status adds to the
/// phase are checked, not only the phase.
#[test]
fn checker_catches_stale_status_reads() {
    let found = hunt(Fault::StaleStatus, FEATURES, 300);
    let (after, report) =
        found.expect("300 histories with stale status reads all passed the check");
    println!("stale status reads caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_stale_reads() {
    let found = hunt(Fault::StaleRead, QUERIES, 500);
    let (after, report) = found.expect("500 histories with stale reads all passed the check");
    println!("stale reads caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_double_success() {
    let found = hunt(Fault::DoubleSuccess, SUCCESSES, 500);
    let (after, report) = found.expect("500 histories with double successes all passed the check");
    println!("double success caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_waits_that_do_not_wait() {
    let found = hunt(Fault::WaitTooSoon, WAITS, 500);
    let (after, report) = found.expect("500 histories with early waits all passed the check");
    println!("early waits caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_cancels_that_do_not_wait() {
    let found = hunt(Fault::CancelEarly, WAITS, 500);
    let (after, report) = found.expect("500 histories with early cancels all passed the check");
    println!("early cancels caught after {after} histories:\n{report}");
}
