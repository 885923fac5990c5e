//! Metrics behind the `metrics` feature: every series registered and described at
//! build, and exact values after scripted sequences (a test metrics recorder per test):
//! from worker threads, for queue and run times, expiries, and several recorders.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, Builder, LaunchOptions, SuccessExpiry, TaskError, TaskPhase, TaskState,
};
use common::{bounded, err, ok, Launched};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::oneshot;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// A series: its name and its labels (sorted).
type Series = (String, Vec<(String, String)>);

/// The values seen by one test's metrics recorder. A snapshot resets counters and
/// gauges to zero and empties histograms, so each snapshot holds the change since
/// the previous one; they are added up here.
struct Seen {
    snapshotter: Snapshotter,
    values: HashMap<Series, (Option<Unit>, Value)>,
}

impl Seen {
    fn refresh(&mut self) {
        for (key, unit, _description, value) in self.snapshotter.snapshot().into_vec() {
            let (_kind, key) = key.into_parts();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            let series = (key.name().to_string(), labels);
            let change = match value {
                DebugValue::Counter(n) => Value::Counter(n),
                DebugValue::Gauge(x) => Value::Gauge(x.into_inner()),
                DebugValue::Histogram(xs) => {
                    Value::Histogram(xs.into_iter().map(|x| x.into_inner()).collect())
                }
            };
            match (self.values.get_mut(&series), change) {
                (Some((_, Value::Counter(total))), Value::Counter(n)) => *total += n,
                (Some((_, Value::Gauge(total))), Value::Gauge(x)) => *total += x,
                (Some((_, Value::Histogram(all))), Value::Histogram(xs)) => all.extend(xs),
                (Some(_), change) => panic!("{series:?} changed kind: {change:?}"),
                (None, change) => {
                    self.values.insert(series, (unit, change));
                }
            }
        }
    }

    fn value(&mut self, name: &str, label: Option<(&str, &str)>) -> Value {
        self.refresh();
        let labels = label
            .map(|(k, v)| vec![(k.to_string(), v.to_string())])
            .unwrap_or_default();
        match self.values.get(&(name.to_string(), labels)) {
            Some((_, value)) => value.clone(),
            None => panic!("no series {name} {label:?}"),
        }
    }

    fn counter(&mut self, name: &str, label: Option<(&str, &str)>) -> u64 {
        match self.value(name, label) {
            Value::Counter(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn ids(&mut self, state: &str) -> f64 {
        match self.value("async_tasks_recorder_ids", Some(("state", state))) {
            Value::Gauge(x) => x,
            other => panic!("not a gauge: {other:?}"),
        }
    }

    /// The gauges of the four phases: working, success, failed, revoking.
    fn gauges(&mut self) -> [f64; 4] {
        ["working", "success", "failed", "revoking"].map(|state| self.ids(state))
    }

    /// The samples of one outcome's duration histogram, sorted.
    fn durations(&mut self, outcome: &str) -> Vec<f64> {
        let name = "async_tasks_recorder_task_duration_seconds";
        match self.value(name, Some(("outcome", outcome))) {
            Value::Histogram(mut xs) => {
                xs.sort_by(f64::total_cmp);
                xs
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }
}

/// Builds a recorder whose series go to a test recorder of its own. The handles are
/// registered during `build`, so the recorder keeps reporting there from any
/// thread once the closure has returned.
fn observed<K>(builder: Builder<K>) -> (AsyncTasksRecorder<K>, Seen)
where
    K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
{
    let test_recorder = DebuggingRecorder::new();
    let snapshotter = test_recorder.snapshotter();
    let rec = metrics::with_local_recorder(&test_recorder, || builder.build());
    let seen = Seen {
        snapshotter,
        values: HashMap::new(),
    };
    (rec, seen)
}

fn assert_near(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
    }
}

#[test]
fn every_series_is_registered_and_described_at_build() {
    let (_rec, mut seen) = observed(AsyncTasksRecorder::<u32>::builder());
    seen.refresh();
    // 4 phase gauges and the queued one, launches, 3 refusal reasons, successes,
    // 6 failure reasons, 2 revoke outcomes, 2 duration histograms, the queue wait.
    assert_eq!(seen.values.len(), 21, "{:?}", seen.values.keys());
    for ((name, labels), (unit, value)) in &seen.values {
        assert!(name.starts_with("async_tasks_recorder_"), "{name}");
        assert!(labels.len() <= 1, "{name}: {labels:?}");
        let zero = match value {
            Value::Counter(n) => {
                assert!(name.ends_with("_total"), "{name}");
                *n == 0
            }
            Value::Gauge(x) => *x == 0.0,
            Value::Histogram(xs) => {
                assert_eq!(*unit, Some(Unit::Seconds), "{name}");
                xs.is_empty()
            }
        };
        assert!(zero, "{name} {labels:?} starts at {value:?}");
        if !matches!(value, Value::Histogram(_)) {
            assert_eq!(*unit, Some(Unit::Count), "{name}");
        }
    }
}

/// Every kind of transition once or more, then every series checked exactly.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_scripted_sequence_gives_exact_values() {
    let (rec, mut seen) = observed(AsyncTasksRecorder::<u32>::builder());
    let secs = Duration::from_secs;
    let pending = std::future::pending::<Result<(), ()>>;

    // 1 succeeds after 2 s; launching it again is refused.
    let two_seconds = async move {
        tokio::time::sleep(secs(2)).await;
        Ok::<_, ()>(())
    };
    rec.launch_block(1, two_seconds).await.launched();
    assert!(rec.launch_block(1, ok()).await.is_err());
    // 2 fails by error, then succeeds on its second attempt.
    rec.launch_block(2, err()).await.launched();
    rec.launch_block(2, ok()).await.launched();
    // 3 panics in a spawned task.
    let panics = async {
        if true {
            panic!("a test panic (expected)");
        }
        Ok::<(), ()>(())
    };
    rec.launch(3, panics).await.launched();
    assert_eq!(
        bounded("3", rec.wait(&3)).await.failure.unwrap().as_str(),
        "panicked"
    );
    // 4 is cancelled.
    rec.launch(4, pending()).await.launched();
    assert!(bounded("cancel 4", rec.cancel(&4)).await);
    // 5 times out after 5 s.
    let options = LaunchOptions::new().timeout(secs(5));
    let handle = rec.launch_with(5, pending(), options).await.unwrap();
    assert!(matches!(
        bounded("handle 5", handle).await,
        Err(TaskError::TimedOut)
    ));
    // 6's `launch_block` caller goes away after 1 s.
    let gone = tokio::time::timeout(secs(1), rec.launch_block(6, pending())).await;
    assert!(gone.is_err());
    // 7 runs until released; launching it meanwhile is refused.
    let (release_7, released) = oneshot::channel::<()>();
    rec.launch(7, async move { released.await.map_err(|_| ()) })
        .await
        .launched();
    assert!(matches!(
        rec.launch(7, ok()).await,
        Err((TaskState::Working, _))
    ));

    // Revokes: 1 succeeds; 2 fails, twice by error and once dropped.
    assert!(rec.revoke_task_block(1, ok()).await.is_ok());
    assert!(rec.revoke_task(2, err()).await.is_ok());
    assert_eq!(bounded("2", rec.wait(&2)).await.phase, TaskPhase::Success);
    let (fail_revoke, revoke_released) = oneshot::channel::<()>();
    let held_revoke = async move { revoke_released.await.map_err(|_| ()) };
    assert!(rec.revoke_task(2, held_revoke).await.is_ok());
    // The gauges now: 7 working, 2 revoking, 3 to 6 failed, 1 gone.
    assert_eq!(seen.gauges(), [1.0, 0.0, 4.0, 1.0]);
    let counts = rec.counts().await;
    assert_eq!((counts.working, counts.failed, counts.revoking), (1, 4, 1));
    drop(fail_revoke);
    assert_eq!(bounded("2", rec.wait(&2)).await.phase, TaskPhase::Success);
    let dropped = tokio::time::timeout(secs(1), rec.revoke_task_block(2, pending())).await;
    assert!(dropped.is_err());
    // Refusals that change nothing and count nothing: 3 is not a success.
    assert!(rec.revoke_task_block(3, ok()).await.is_err());

    rec.close();
    assert!(rec.launch(8, ok()).await.is_err());
    release_7.send(()).unwrap();
    assert_eq!(bounded("7", rec.wait(&7)).await.phase, TaskPhase::Success);

    // Gauges agree with the records.
    assert_eq!(seen.gauges(), [0.0, 2.0, 4.0, 0.0]);
    let counts = rec.counts().await;
    let as_gauges = [
        counts.working,
        counts.success,
        counts.failed,
        counts.revoking,
    ];
    assert_eq!(as_gauges, [0, 2, 4, 0]);

    assert_eq!(seen.counter("async_tasks_recorder_launches_total", None), 8);
    let refused = "async_tasks_recorder_launches_refused_total";
    for reason in ["working", "success", "closed"] {
        assert_eq!(
            seen.counter(refused, Some(("reason", reason))),
            1,
            "{reason}"
        );
    }
    assert_eq!(
        seen.counter("async_tasks_recorder_successes_total", None),
        3
    );
    let failures = "async_tasks_recorder_failures_total";
    for reason in ["error", "panicked", "cancelled", "timed_out", "dropped"] {
        assert_eq!(
            seen.counter(failures, Some(("reason", reason))),
            1,
            "{reason}"
        );
    }
    let revokes = "async_tasks_recorder_revokes_total";
    assert_eq!(seen.counter(revokes, Some(("outcome", "ok"))), 1);
    assert_eq!(seen.counter(revokes, Some(("outcome", "failed"))), 3);

    // One sample per finished task, from its launch: 1 took 2 s, 2 no time, 7 the
    // 1 s of the dropped revoke; 5 timed out after 5 s, 6 was dropped after 1 s.
    assert_near(&seen.durations("success"), &[0.0, 1.0, 2.0]);
    assert_near(&seen.durations("failed"), &[0.0, 0.0, 0.0, 1.0, 5.0]);
}

/// The handles registered at build are used from the runtime's worker threads,
/// where no metrics recorder is installed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_report_from_worker_threads() {
    let (rec, mut seen) = observed(AsyncTasksRecorder::<u32>::builder());
    let mut handles = Vec::new();
    for id in 0..200u32 {
        let task = async move {
            tokio::task::yield_now().await;
            if id % 2 == 0 {
                Ok(())
            } else {
                Err(())
            }
        };
        let launched = rec.launch_with(id, task, LaunchOptions::new()).await;
        handles.push(launched.unwrap());
    }
    // A handle resolves after its task was reported.
    for handle in handles {
        let _ = bounded("a handle", handle).await;
    }
    assert_eq!(
        seen.counter("async_tasks_recorder_launches_total", None),
        200
    );
    assert_eq!(
        seen.counter("async_tasks_recorder_successes_total", None),
        100
    );
    let errors = Some(("reason", "error"));
    let failures = "async_tasks_recorder_failures_total";
    assert_eq!(seen.counter(failures, errors), 100);
    assert_eq!(seen.gauges(), [0.0, 100.0, 100.0, 0.0]);
    assert_eq!(seen.durations("success").len(), 100);
    assert_eq!(seen.durations("failed").len(), 100);
}

/// With `max_running`, the queued gauge counts the tasks waiting for a slot, the
/// queue wait is measured on its own, and the duration is the run's alone.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn queue_time_and_run_time_are_apart() {
    let (rec, mut seen) = observed(AsyncTasksRecorder::<u32>::builder().max_running(1));
    let secs = Duration::from_secs;
    let sleeping = |s: u64| async move {
        tokio::time::sleep(secs(s)).await;
        Ok::<_, ()>(())
    };
    let first = rec.launch_with(1, sleeping(2), LaunchOptions::new());
    let first = first.await.unwrap();
    let second = rec.launch_with(2, sleeping(3), LaunchOptions::new());
    let second = second.await.unwrap();
    assert_eq!(seen.ids("queued"), 1.0, "id 2 waits");
    assert_eq!(
        seen.ids("working"),
        2.0,
        "working counts the queued one too"
    );
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(seen.ids("queued"), 0.0);
    // Run times 2 s and 3 s; id 2 waited 2 s for its slot (id 1 took no wait and
    // so records none).
    assert_near(&seen.durations("success"), &[2.0, 3.0]);
    let waits = match seen.value("async_tasks_recorder_task_queue_wait_seconds", None) {
        Value::Histogram(xs) => xs,
        other => panic!("not a histogram: {other:?}"),
    };
    assert_near(&waits, &[2.0]);
}

/// Retention's expiries and evictions go through the same transitions, so the
/// gauges follow them: forgotten records leave, tombstones stay `success`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn expiry_moves_the_gauges() {
    let ttl = Duration::from_secs(10);
    // Past the TTL plus one sweeper tick; yields let the sweeper finish its round.
    let expire = || async move {
        tokio::time::sleep(2 * ttl).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    };
    let with_ttl = || AsyncTasksRecorder::<u32>::builder().success_ttl(ttl);

    let builder = with_ttl()
        .failed_ttl(ttl)
        .success_expiry(SuccessExpiry::Forget);
    let (forget, mut seen) = observed(builder);
    forget.launch_block(1, ok()).await.launched();
    forget.launch_block(2, err()).await.launched();
    assert_eq!(seen.gauges(), [0.0, 1.0, 1.0, 0.0]);
    expire().await;
    assert_eq!(forget.counts().await.total(), 0);
    assert_eq!(seen.gauges(), [0.0, 0.0, 0.0, 0.0]);
    // A record waiting for its expiry is taken off when the recorder goes.
    forget.launch_block(3, ok()).await.launched();
    assert_eq!(seen.gauges(), [0.0, 1.0, 0.0, 0.0]);
    drop(forget);
    assert_eq!(seen.gauges(), [0.0, 0.0, 0.0, 0.0]);

    let (tombstones, mut seen) = observed(with_ttl());
    tombstones.launch_block(1, ok()).await.launched();
    expire().await;
    assert_eq!(tombstones.query_task_state(&1).await, TaskState::Success);
    assert_eq!(seen.gauges(), [0.0, 1.0, 0.0, 0.0]);
    drop(tombstones);
    assert_eq!(seen.gauges(), [0.0, 0.0, 0.0, 0.0]);

    // The cap on finished records evicts through the same transitions.
    let capped = AsyncTasksRecorder::<u32>::builder().max_finished(2);
    let (capped, mut seen) = observed(capped);
    for id in 0..5 {
        capped.launch_block(id, err()).await.launched();
    }
    assert_eq!(capped.counts().await.failed, 2);
    assert_eq!(seen.gauges(), [0.0, 0.0, 2.0, 0.0]);
}

/// Two recorders built under one metrics recorder add up; dropping one takes its
/// records off the gauges.
#[tokio::test(flavor = "current_thread")]
async fn gauges_add_up_and_forget_a_dropped_recorder() {
    let test_recorder = DebuggingRecorder::new();
    let mut seen = Seen {
        snapshotter: test_recorder.snapshotter(),
        values: HashMap::new(),
    };
    let (a, b) = metrics::with_local_recorder(&test_recorder, || {
        (
            AsyncTasksRecorder::<u32>::new(),
            AsyncTasksRecorder::<u32>::new(),
        )
    });
    for id in 0..3 {
        a.launch_block(id, ok()).await.launched();
    }
    a.launch_block(3, err()).await.launched();
    b.launch_block(0, ok()).await.launched();
    assert_eq!(seen.gauges(), [0.0, 4.0, 1.0, 0.0]);
    let a_clone = a.clone();
    drop(a);
    assert_eq!(
        seen.gauges(),
        [0.0, 4.0, 1.0, 0.0],
        "a clone keeps the records"
    );
    drop(a_clone);
    assert_eq!(seen.gauges(), [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(seen.counter("async_tasks_recorder_launches_total", None), 5);
}
