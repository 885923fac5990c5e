//! Model-based property test: random sequences of operations on a few ids, driven
//! deterministically on a current-thread runtime (the test decides when each future
//! ends), compared step by step with the sequential model in `tests/model`.
//!
//! The same driver runs against subjects with injected faults, and must report them.

mod common;
#[path = "model_based/driver.rs"]
mod driver;
mod model;

use async_tasks_recorder::TaskState;
use driver::run_case;
use model::Fault;
use proptest::prelude::*;
use proptest::test_runner::Config;

const IDS: u64 = 3;

/// How a future ends when the test releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ok,
    Err,
    Panic,
}

/// Whether an operation spawns (`launch`, `revoke_task`) or runs in the caller
/// (`launch_block`, `revoke_task_block`, here inside a task the test owns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Spawn,
    Block,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `launch_with`: a handle, and optionally a timeout that only `Elapse` reaches.
    LaunchWith {
        id: u64,
        timeout: bool,
    },
    /// Move the paused clock past every timeout.
    Elapse,
    /// `wait` on the id: resolves at once if it is final, otherwise when it ends.
    Wait {
        id: u64,
    },
    /// `cancel` the running attempt of the id, if any.
    Cancel {
        id: u64,
    },
    /// Launch a future that runs until `Finish` releases it.
    Launch {
        id: u64,
        how: How,
    },
    /// End the running future of `id`, if any.
    Finish {
        id: u64,
        end: End,
    },
    /// Poll a `launch_block` once and drop it while its future runs.
    DropBlocking {
        id: u64,
    },
    Query {
        id: u64,
    },
    Quick {
        id: u64,
    },
    /// A blocking revoke whose future ends at once.
    RevokeNow {
        id: u64,
        end: End,
    },
    /// A revoke whose future runs until `RevokeFinish` releases it.
    RevokeStart {
        id: u64,
        how: How,
    },
    RevokeFinish {
        id: u64,
        end: End,
    },
    /// Poll a `revoke_task_block` once and drop it while its future runs.
    RevokeDrop {
        id: u64,
    },
    Counts,
    /// `close()`: every later launch of a launchable id is refused.
    Close,
    Ids {
        state: TaskState,
    },
    /// `launch_kept`: like `Launch` (spawned), keeping the end's text.
    LaunchKept {
        id: u64,
    },
    /// `status`: the phase, what the record kept, and the progress.
    Status {
        id: u64,
    },
    /// `launch_fenced` of a future that reports progress as it starts, then runs
    /// until `Finish` releases it.
    LaunchReporting {
        id: u64,
    },
    /// `launch_retrying` with two attempts an hour apart: the first fails at once, the
    /// second (after an `Elapse`) runs until `Finish` releases it.
    LaunchRetrying {
        id: u64,
    },
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![3 => Just(End::Ok), 2 => Just(End::Err), 1 => Just(End::Panic)]
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Spawn), Just(How::Block)]
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS;
    prop_oneof![
        4 => (id.clone(), how()).prop_map(|(id, how)| Step::Launch { id, how }),
        2 => (id.clone(), any::<bool>()).prop_map(|(id, timeout)| Step::LaunchWith { id, timeout }),
        1 => Just(Step::Elapse),
        2 => id.clone().prop_map(|id| Step::Wait { id }),
        1 => id.clone().prop_map(|id| Step::Cancel { id }),
        4 => (id.clone(), end()).prop_map(|(id, end)| Step::Finish { id, end }),
        1 => id.clone().prop_map(|id| Step::DropBlocking { id }),
        3 => id.clone().prop_map(|id| Step::Query { id }),
        2 => id.clone().prop_map(|id| Step::Quick { id }),
        2 => (id.clone(), end()).prop_map(|(id, end)| Step::RevokeNow { id, end }),
        2 => (id.clone(), how()).prop_map(|(id, how)| Step::RevokeStart { id, how }),
        2 => (id.clone(), end()).prop_map(|(id, end)| Step::RevokeFinish { id, end }),
        1 => id.clone().prop_map(|id| Step::RevokeDrop { id }),
        1 => Just(Step::Counts),
        // Rare, since it makes every later launch a refusal.
        1 => Just(Step::Close),
        1 => prop::sample::select(TaskState::ALL.to_vec()).prop_map(|state| Step::Ids { state }),
        2 => id.clone().prop_map(|id| Step::LaunchKept { id }),
        2 => id.clone().prop_map(|id| Step::Status { id }),
        2 => id.clone().prop_map(|id| Step::LaunchReporting { id }),
        2 => id.clone().prop_map(|id| Step::LaunchRetrying { id }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..60)
}

proptest! {
    #![proptest_config(Config { cases: 1000, ..Config::default() })]

    #[test]
    fn recorder_follows_the_model(steps in steps()) {
        run_case(&steps, Fault::None)?;
    }
}

/// Runs the property against a faulty subject and returns the minimal failing case.
fn find_violation(fault: Fault) -> String {
    model::find_violation(fault, 2048, &steps(), |steps| run_case(steps, fault))
}

#[test]
fn property_test_catches_stale_reads() {
    let report = find_violation(Fault::StaleRead);
    assert!(report.contains("the state was"), "{report}");
}

#[test]
fn property_test_catches_a_second_success() {
    let report = find_violation(Fault::DoubleSuccess);
    assert!(report.contains("the launch was Ok(())"), "{report}");
}
