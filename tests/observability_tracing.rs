//! Tracing behind the `tracing` feature: the spans and events that a recording
//! subscriber sees for launches, finishes and revokes, with or without ids, nested in
//! the launching span, and with the span disabled; a panicking hook strands nothing.
#![cfg(feature = "tracing")]

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions, TaskError};
use common::{bounded, err, ok, Launched};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Event, Instrument, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Every test calls this first: it installs (once) a global subscriber that records
/// nothing but keeps every callsite's interest at "sometimes": tracing caches a
/// callsite's interest when it is first hit, and a callsite first hit by a test with no
/// subscriber, while another test was installing its own, could stay cached as "never"
/// and hide events from that test.
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(Quiet)
            .expect("no other global subscriber in this test binary");
    });
}

/// The global subscriber of this test binary: see [`init`].
struct Quiet;

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
