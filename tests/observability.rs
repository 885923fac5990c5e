//! Observability behind the `tracing` and `metrics` features: exact metric values after
//! scripted sequences (a test metrics recorder per test), and the spans and events that
//! a recording subscriber sees.
#![cfg(any(feature = "tracing", feature = "metrics"))]

mod common;

/// Every test calls this first. With `tracing`, it installs (once) a global subscriber
/// that records nothing but keeps every callsite's interest at "sometimes": tracing
/// caches a callsite's interest when it is first hit, and a callsite first hit by a
/// test with no subscriber, while another test was installing its own, could stay
/// cached as "never" and hide events from that test.
fn init() {
    #[cfg(feature = "tracing")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::subscriber::set_global_default(tracing_feature::Quiet)
                .expect("no other global subscriber in this test binary");
        });
    }
}

#[cfg(feature = "metrics")]
mod metrics_feature {
    use std::collections::HashMap;
    use std::time::Duration;

    use async_tasks_recorder::{
        AsyncTasksRecorder, Builder, LaunchOptions, SuccessExpiry, TaskError, TaskPhase, TaskState,
    };
    use metrics::Unit;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use tokio::sync::oneshot;

    use crate::common::{bounded, err, ok, Launched};
    use crate::init;

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
        init();
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
        init();
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
}

#[cfg(feature = "tracing")]
mod tracing_feature {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions, TaskError};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::subscriber::Interest;
    use tracing::{Event, Instrument, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    use crate::common::{bounded, err, ok, Launched};
    use crate::init;

    /// The global subscriber of this test binary: see [`init`].
    pub(crate) struct Quiet;

    impl Subscriber for Quiet {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    type Fields = BTreeMap<&'static str, String>;

    /// Collects the fields of a span or an event, strings without quotes.
    struct Collect<'a>(&'a mut Fields);

    impl Visit for Collect<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name(), value.to_string());
        }
    }

    /// What a span was created with, kept in its extensions.
    #[derive(Clone)]
    struct SpanSeen {
        name: &'static str,
        fields: Fields,
        parent: Option<&'static str>,
    }

    impl fmt::Display for SpanSeen {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.name)?;
            for (k, v) in &self.fields {
                write!(f, " {k}={v}")?;
            }
            Ok(())
        }
    }

    /// A layer that writes down every span and event, as one line each.
    #[derive(Clone, Default)]
    struct Log {
        lines: Arc<Mutex<Vec<String>>>,
        /// Spans, as `name fields <- parent`.
        spans: Arc<Mutex<Vec<String>>>,
        /// Spans created minus spans closed.
        open: Arc<Mutex<i64>>,
        /// Disable every span (for the test of events whose span is filtered out).
        spans_off: bool,
    }

    impl Log {
        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }
        fn spans(&self) -> Vec<String> {
            self.spans.lock().unwrap().clone()
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Log {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            // Ask for every span and event anew: other tests run with other
            // subscribers, or none.
            Interest::sometimes()
        }

        fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
            !(self.spans_off && metadata.is_span())
        }

        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields::new();
            attrs.record(&mut Collect(&mut fields));
            let span = ctx.span(id).expect("a new span is known");
            let seen = SpanSeen {
                name: span.name(),
                fields,
                parent: span.parent().map(|p| p.name()),
            };
            let parent = seen.parent.unwrap_or("none");
            self.spans
                .lock()
                .unwrap()
                .push(format!("{seen} <- {parent}"));
            *self.open.lock().unwrap() += 1;
            span.extensions_mut().insert(seen);
        }

        fn on_close(&self, _: Id, _: Context<'_, S>) {
            *self.open.lock().unwrap() -= 1;
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let meta = event.metadata();
            let mut fields = Fields::new();
            event.record(&mut Collect(&mut fields));
            let mut line = format!("{} {}", meta.level(), fields.remove("message").unwrap());
            for (k, v) in &fields {
                line.push_str(&format!(" {k}={v}"));
            }
            if let Some(span) = ctx.event_span(event) {
                let seen = span.extensions().get::<SpanSeen>().cloned().unwrap();
                line.push_str(&format!(" [{seen}]"));
            }
            if meta.target() != "async_tasks_recorder" && meta.target() != module_path!() {
                line.push_str(&format!(" (target {})", meta.target()));
            }
            self.lines.lock().unwrap().push(line);
        }
    }

    /// Records what this thread emits until the guard is dropped. The tests run on a
    /// current-thread runtime, so their spawned tasks run on this thread too.
    fn capture(spans_off: bool) -> (Log, tracing::subscriber::DefaultGuard) {
        init();
        let log = Log {
            spans_off,
            ..Log::default()
        };
        let subscriber = tracing_subscriber::registry().with(log.clone());
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// Every event of the crate, in order, with the ids opted in.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn launch_finish_and_revoke_events_with_ids() {
        let (log, _guard) = capture(false);
        let rec = AsyncTasksRecorder::<u32>::builder()
            .record_ids(true)
            .build();
        let pending = std::future::pending::<Result<(), ()>>;

        let task = async {
            tracing::info!("user event");
            Ok::<_, ()>(())
        };
        rec.launch_block(1, task).await.launched();
        assert!(rec.launch_block(1, ok()).await.is_err());
        rec.launch_block(2, err()).await.launched();
        let task = async {
            tokio::task::yield_now().await;
            tracing::info!("user event after a yield");
            Ok::<_, ()>(())
        };
        rec.launch(3, task).await.launched();
        bounded("3", rec.wait(&3)).await;
        rec.launch(4, pending()).await.launched();
        assert!(bounded("cancel 4", rec.cancel(&4)).await);
        let options = LaunchOptions::new().timeout(Duration::from_secs(1));
        let handle = rec.launch_with(5, pending(), options).await.unwrap();
        assert!(matches!(
            bounded("handle 5", handle).await,
            Err(TaskError::TimedOut)
        ));
        let revoke = async {
            tracing::info!("user event in a revoke");
            Ok::<_, ()>(())
        };
        assert!(rec.revoke_task_block(1, revoke).await.is_ok());
        assert!(rec.revoke_task_block(2, ok()).await.is_err());
        assert!(rec.revoke_task(3, err()).await.is_ok());
        bounded("3", rec.wait(&3)).await;
        rec.close();
        assert!(rec.launch(6, ok()).await.is_err());

        let want = [
            "DEBUG task launched [task id=1]",
            "INFO user event [task id=1]",
            "DEBUG task succeeded [task id=1]",
            "DEBUG task launch refused closed=false id=1 state=success",
            "DEBUG task launched [task id=2]",
            "WARN task failed reason=error [task id=2]",
            "DEBUG task launched [task id=3]",
            "INFO user event after a yield [task id=3]",
            "DEBUG task succeeded [task id=3]",
            "DEBUG task launched [task id=4]",
            "WARN task failed reason=cancelled [task id=4]",
            "DEBUG task launched [task id=5]",
            "WARN task failed reason=timed_out [task id=5]",
            "DEBUG revoke started [revoke id=1]",
            "INFO user event in a revoke [revoke id=1]",
            "DEBUG revoke succeeded [revoke id=1]",
            "DEBUG revoke refused id=2 phase=failed",
            "DEBUG revoke started [revoke id=3]",
            "WARN revoke failed [revoke id=3]",
            "DEBUG task launch refused closed=true id=6 state=not_found",
        ];
        assert_eq!(log.lines(), want);
        // Every span ended with its task or revoke.
        assert_eq!(*log.open.lock().unwrap(), 0);
    }

    /// An id whose `Debug` panics: user code the hooks run.
    #[derive(Clone, PartialEq, Eq, Hash)]
    struct Touchy(u32);

    impl fmt::Debug for Touchy {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("Debug of a Touchy id")
        }
    }

    /// A hook that panics (here, formatting the id for the task span) loses its report
    /// but never leaves the id running or its waiters asleep.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_hook_strands_nothing() {
        let (_log, _guard) = capture(false);
        let rec = AsyncTasksRecorder::<Touchy>::builder()
            .record_ids(true)
            .build();
        assert!(rec.launch_block(Touchy(1), ok()).await.is_ok());
        assert!(rec.launch(Touchy(2), err()).await.is_ok());
        let settled = bounded("2", rec.wait(&Touchy(2))).await;
        assert_eq!(settled.phase, async_tasks_recorder::TaskPhase::Failed);
        assert!(rec.revoke_task_block(Touchy(1), ok()).await.is_ok());
        rec.close();
        bounded("idle", rec.wait_idle()).await;
        let counts = rec.counts().await;
        assert_eq!((counts.working, counts.revoking, counts.failed), (0, 0, 1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_id_field_without_opting_in() {
        let (log, _guard) = capture(false);
        let rec = AsyncTasksRecorder::<u32>::new();
        rec.launch_block(1, ok()).await.launched();
        assert!(rec.launch_block(1, ok()).await.is_err());
        rec.launch_block(2, err()).await.launched();
        assert!(rec.revoke_task_block(1, ok()).await.is_ok());
        let want = [
            "DEBUG task launched [task]",
            "DEBUG task succeeded [task]",
            "DEBUG task launch refused closed=false state=success",
            "DEBUG task launched [task]",
            "WARN task failed reason=error [task]",
            "DEBUG revoke started [revoke]",
            "DEBUG revoke succeeded [revoke]",
        ];
        assert_eq!(log.lines(), want);
        assert_eq!(
            log.spans(),
            ["task <- none", "task <- none", "revoke <- none"]
        );
    }

    /// The task span's parent is the span current at the launch, and what the task's
    /// future emits, in any poll, is inside the task span.
    #[tokio::test(flavor = "current_thread")]
    async fn the_task_span_nests_in_the_launching_span() {
        let (log, _guard) = capture(false);
        let rec = AsyncTasksRecorder::<String>::builder()
            .record_ids(true)
            .build();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = async move {
            let _ = rx.await;
            tracing::info!(step = 2, "after the wait");
            Ok::<_, ()>(())
        };
        let request = tracing::info_span!("request", path = "/upload");
        let launched = rec.launch("a".to_string(), task).instrument(request).await;
        launched.launched();
        tx.send(()).unwrap();
        bounded("a", rec.wait("a")).await;
        assert_eq!(
            log.spans(),
            ["request path=/upload <- none", "task id=\"a\" <- request"]
        );
        assert_eq!(
            log.lines()[1],
            "INFO after the wait step=2 [task id=\"a\"]",
            "{:?}",
            log.lines()
        );
    }

    /// With the task span filtered out, the task's own events carry the id, so a
    /// warning still says which task failed.
    #[tokio::test(flavor = "current_thread")]
    async fn events_carry_the_id_when_the_span_is_disabled() {
        let (log, _guard) = capture(true);
        let rec = AsyncTasksRecorder::<u32>::builder()
            .record_ids(true)
            .build();
        rec.launch_block(7, err()).await.launched();
        rec.launch_block(7, ok()).await.launched();
        assert!(rec.revoke_task_block(7, err()).await.is_err());
        let want = [
            "DEBUG task launched id=7",
            "WARN task failed id=7 reason=error",
            "DEBUG task launched id=7",
            "DEBUG task succeeded id=7",
            "DEBUG revoke started id=7",
            "WARN revoke failed id=7",
        ];
        assert_eq!(log.lines(), want);
        assert!(log.spans().is_empty());
    }
}
