//! Observability: `tracing` spans and events, and `metrics` gauges, counters and a
//! histogram, each behind its cargo feature. The crate docs list what is emitted.
//!
//! The recorder owns one [`Observer`], built from the [`Builder`](crate::Builder), and
//! gives its store the phase [`Gauges`]; each guard carries a [`Watch`] for the running
//! phase it ends. Without the features all three are zero-sized and every method below
//! is an empty function, so a build without them has no extra field, branch or clock
//! read on any path.
//!
//! Where the hooks sit, and why there:
//! - The phase gauges move in [`Gauges::transition`], which the in-memory store calls
//!   under the shard lock at every transition (two atomic adds at most), next to the
//!   transition's event: so they follow the records whatever moves them.
//! - Events and counters are reported by the callers once the store call has returned,
//!   never under a shard lock: a slow subscriber or exporter must not stall the other
//!   ids of a shard. The end of a running phase is reported before its waiters are
//!   woken and before a task handle resolves, so whoever was woken by it, or awaited
//!   the handle, sees the counters already moved.

use std::fmt;
use std::marker::PhantomData;

use crate::state::{Phase, Refused};
use crate::status::FailureReason;

/// `<K as Debug>::fmt`, kept by [`Builder::record_ids`](crate::Builder::record_ids):
/// ids are formatted through it because `K` itself is not bound by `Debug`.
pub(crate) type FmtId<K> = fn(&K, &mut fmt::Formatter<'_>) -> fmt::Result;

/// The target of every span and event of the crate.
#[cfg(feature = "tracing")]
const TARGET: &str = "async_tasks_recorder";

/// What one recorder reports, and to where.
pub(crate) struct Observer<K> {
    /// Formats ids for spans and events; `None` leaves ids out.
    #[cfg(feature = "tracing")]
    fmt_id: Option<FmtId<K>>,
    #[cfg(feature = "metrics")]
    metrics: Metrics,
    _ids: PhantomData<fn(&K)>,
}

/// The gauge of ids per phase: the part of the reports that moves with the records,
/// given to the in-memory store with its event stream. (The Redis recorder has none: a
/// process does not see a shared namespace's transitions as they happen.)
#[derive(Clone)]
pub(crate) struct Gauges {
    /// In [`GAUGED`] order; no-op gauges for a store built without an observer.
    #[cfg(feature = "metrics")]
    ids: [metrics::Gauge; 4],
    /// `Working` ids waiting for a running slot.
    #[cfg(feature = "metrics")]
    queued: metrics::Gauge,
}

impl Default for Gauges {
    /// Gauges that report to nothing.
    fn default() -> Self {
        Gauges {
            #[cfg(feature = "metrics")]
            ids: std::array::from_fn(|_| metrics::Gauge::noop()),
            #[cfg(feature = "metrics")]
            queued: metrics::Gauge::noop(),
        }
    }
}

impl fmt::Debug for Gauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}

// The arguments are used only with `metrics`.
#[allow(unused_variables)]
impl Gauges {
    /// A record moved from `from` to `to`. Called by the store under the shard lock.
    #[inline]
    pub(crate) fn transition(&self, from: Phase, to: Phase) {
        #[cfg(feature = "metrics")]
        {
            if let Some(i) = gauge_slot(from) {
                self.ids[i].decrement(1.0);
            }
            if let Some(i) = gauge_slot(to) {
                self.ids[i].increment(1.0);
            }
        }
    }

    /// A `Working` id started waiting for a running slot (`1`), or stopped (`-1`).
    #[allow(unused_variables)]
    pub(crate) fn queued(&self, delta: i8) {
        #[cfg(feature = "metrics")]
        self.queued.increment(f64::from(delta));
    }

    /// Records left the store without a transition (the store was dropped): `counts`
    /// ids per phase, in the order working, success, failed, revoking, and `queued`
    /// of the working ones waiting for a slot.
    #[cfg(feature = "metrics")]
    pub(crate) fn forget(&self, counts: [usize; 4], queued: usize) {
        for (gauge, n) in self.ids.iter().zip(counts) {
            // Counts are far below 2^53, so the conversion is exact.
            gauge.decrement(n as f64);
        }
        self.queued.decrement(queued as f64);
    }
}

/// What travels with the guard of one running phase.
pub(crate) struct Watch {
    /// The span of the task or revoke: it instruments the user's future, and the
    /// events of the phase have it as parent.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// When the task started running: its launch, or for a queued task the end of its
    /// wait for a slot; `None` for a revoke, whose duration is not measured. Tokio's
    /// clock, so that a paused test clock gives exact durations.
    #[cfg(feature = "metrics")]
    launched: Option<tokio::time::Instant>,
}

impl Watch {
    /// No span and no start time: what a guard carries if starting its watch failed.
    pub(crate) fn empty() -> Self {
        Watch {
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
            #[cfg(feature = "metrics")]
            launched: None,
        }
    }

    /// A queued task got its running slot now: its wait is recorded, and its run's
    /// clock starts.
    pub(crate) fn dequeued<K>(&mut self, observer: &Observer<K>) {
        self.dequeued_at(observer, tokio::time::Instant::now());
    }

    /// A queued task got its running slot at `at`.
    #[allow(unused_variables)]
    pub(crate) fn dequeued_at<K>(&mut self, observer: &Observer<K>, at: tokio::time::Instant) {
        #[cfg(feature = "metrics")]
        if let Some(launched) = self.launched {
            observer
                .metrics
                .queue_waits
                .record(at.saturating_duration_since(launched).as_secs_f64());
            self.launched = Some(at);
        }
    }

    /// `fut`, run inside the phase's span.
    #[cfg(feature = "tracing")]
    pub(crate) fn instrument<F>(&self, fut: F) -> tracing::instrument::Instrumented<F> {
        tracing::Instrument::instrument(fut, self.span.clone())
    }

    /// `fut` itself: without `tracing` there is no span to run it in.
    #[cfg(not(feature = "tracing"))]
    #[inline]
    pub(crate) fn instrument<F>(&self, fut: F) -> F {
        fut
    }
}

// Each method uses its arguments only under some of the features.
#[allow(unused_variables)]
impl<K> Observer<K> {
    /// Builds the observer; with `metrics`, registers every series with the recorder
    /// installed now, once, so that reporting later is an atomic operation on a handle.
    pub(crate) fn new(fmt_id: Option<FmtId<K>>) -> Self {
        Observer {
            #[cfg(feature = "tracing")]
            fmt_id,
            #[cfg(feature = "metrics")]
            metrics: Metrics::register(),
            _ids: PhantomData,
        }
    }

    /// The phase gauges, for the store to move at each transition.
    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            #[cfg(feature = "metrics")]
            ids: self.metrics.ids.clone(),
            #[cfg(feature = "metrics")]
            queued: self.metrics.queued.clone(),
        }
    }

    /// The store accepted a launch of `key`: counts it, opens the task's span, and
    /// starts its clock.
    #[inline]
    pub(crate) fn task_started(&self, key: &K) -> Watch {
        #[cfg(feature = "metrics")]
        self.metrics.launches.increment(1);
        let watch = Watch {
            // Contextual parent: the span current at the launch (a request, say).
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(target: TARGET, "task", id = self.id(key)),
            #[cfg(feature = "metrics")]
            launched: Some(tokio::time::Instant::now()),
        };
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: TARGET,
            parent: &watch.span,
            id = self.id_unless_in(&watch.span, key),
            "task launched"
        );
        watch
    }

    /// The store refused a launch of `key`.
    #[inline]
    pub(crate) fn launch_refused(&self, key: &K, refused: Refused) {
        #[cfg(feature = "metrics")]
        self.metrics.refused[refusal_slot(refused)].increment(1);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: TARGET,
            id = self.id(key),
            state = refused.phase.state().as_str(),
            closed = refused.closed,
            "task launch refused"
        );
    }

    /// The task of `watch` ended as `settled`.
    #[inline]
    pub(crate) fn task_ended(&self, watch: &Watch, key: &K, failure: Option<FailureReason>) {
        #[cfg(feature = "metrics")]
        {
            let outcome = match failure {
                None => {
                    self.metrics.successes.increment(1);
                    0
                }
                Some(reason) => {
                    self.metrics.failures[reason_slot(reason)].increment(1);
                    1
                }
            };
            if let Some(launched) = watch.launched {
                self.metrics.durations[outcome].record(launched.elapsed().as_secs_f64());
            }
        }
        #[cfg(feature = "tracing")]
        match failure {
            None => tracing::debug!(
                target: TARGET,
                parent: &watch.span,
                id = self.id_unless_in(&watch.span, key),
                "task succeeded"
            ),
            Some(reason) => tracing::warn!(
                target: TARGET,
                parent: &watch.span,
                id = self.id_unless_in(&watch.span, key),
                reason = reason.as_str(),
                "task failed"
            ),
        }
    }

    /// The store accepted a revoke of `key`: opens the revoke's span.
    #[inline]
    pub(crate) fn revoke_started(&self, key: &K) -> Watch {
        let watch = Watch {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(target: TARGET, "revoke", id = self.id(key)),
            #[cfg(feature = "metrics")]
            launched: None,
        };
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: TARGET,
            parent: &watch.span,
            id = self.id_unless_in(&watch.span, key),
            "revoke started"
        );
        watch
    }

    /// The store refused a revoke of `key`, found in `phase`.
    #[inline]
    pub(crate) fn revoke_refused(&self, key: &K, phase: Phase) {
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: TARGET,
            id = self.id(key),
            phase = phase.as_str(),
            "revoke refused"
        );
    }

    /// The revoke of `watch` ended: `ok` if its future returned `Ok`.
    #[inline]
    pub(crate) fn revoke_ended(&self, watch: &Watch, key: &K, ok: bool) {
        #[cfg(feature = "metrics")]
        self.metrics.revokes[usize::from(!ok)].increment(1);
        #[cfg(feature = "tracing")]
        if ok {
            tracing::debug!(
                target: TARGET,
                parent: &watch.span,
                id = self.id_unless_in(&watch.span, key),
                "revoke succeeded"
            );
        } else {
            tracing::warn!(
                target: TARGET,
                parent: &watch.span,
                id = self.id_unless_in(&watch.span, key),
                "revoke failed"
            );
        }
    }
}

#[cfg(feature = "tracing")]
impl<K> Observer<K> {
    /// The `id` field: present only when the user opted in.
    fn id<'a>(&self, key: &'a K) -> Option<tracing::field::DebugValue<ShowId<'a, K>>> {
        self.fmt_id
            .map(|fmt| tracing::field::debug(ShowId(key, fmt)))
    }

    /// The `id` field of an event of a running phase. The id is a field of the phase's
    /// span, so the event repeats it only when that span is disabled (filtered out by
    /// level, say): a warning about a failed task then still says which task it was.
    fn id_unless_in<'a>(
        &self,
        span: &tracing::Span,
        key: &'a K,
    ) -> Option<tracing::field::DebugValue<ShowId<'a, K>>> {
        if span.is_disabled() {
            self.id(key)
        } else {
            None
        }
    }
}

/// An id shown through the `Debug` formatter kept by the builder.
#[cfg(feature = "tracing")]
struct ShowId<'a, K>(&'a K, FmtId<K>);

#[cfg(feature = "tracing")]
impl<K> fmt::Debug for ShowId<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.1)(self.0, f)
    }
}

/// The phases that have a gauge, in the order of [`Metrics::ids`] (`NotFound` has no
/// records, hence no gauge).
#[cfg(feature = "metrics")]
const GAUGED: [Phase; 4] = [
    Phase::Working,
    Phase::Success,
    Phase::Failed,
    Phase::Revoking,
];

#[cfg(feature = "metrics")]
fn gauge_slot(phase: Phase) -> Option<usize> {
    match phase {
        Phase::Working => Some(0),
        Phase::Success => Some(1),
        Phase::Failed => Some(2),
        Phase::Revoking => Some(3),
        Phase::NotFound => None,
    }
}

/// Every failure reason, in the order of [`Metrics::failures`].
#[cfg(feature = "metrics")]
const REASONS: [crate::FailureReason; 6] = crate::FailureReason::ALL;

#[cfg(feature = "metrics")]
fn reason_slot(reason: crate::FailureReason) -> usize {
    REASONS
        .iter()
        .position(|r| *r == reason)
        .expect("REASONS lists every reason")
}

/// The `reason` labels of refused launches, in the order of [`Metrics::refused`].
#[cfg(feature = "metrics")]
const REFUSALS: [&str; 3] = ["working", "success", "closed"];

#[cfg(feature = "metrics")]
fn refusal_slot(refused: Refused) -> usize {
    if refused.closed {
        2
    } else if refused.phase == Phase::Working {
        0
    } else {
        // Success or Revoking: the only other phases that refuse a launch.
        1
    }
}

/// The metric names; the crate docs describe each.
#[cfg(feature = "metrics")]
mod names {
    pub(super) const IDS: &str = "async_tasks_recorder_ids";
    pub(super) const LAUNCHES: &str = "async_tasks_recorder_launches_total";
    pub(super) const REFUSED: &str = "async_tasks_recorder_launches_refused_total";
    pub(super) const SUCCESSES: &str = "async_tasks_recorder_successes_total";
    pub(super) const FAILURES: &str = "async_tasks_recorder_failures_total";
    pub(super) const REVOKES: &str = "async_tasks_recorder_revokes_total";
    pub(super) const DURATION: &str = "async_tasks_recorder_task_duration_seconds";
    pub(super) const QUEUE_WAIT: &str = "async_tasks_recorder_task_queue_wait_seconds";
}

/// Handles to every series, registered once when the recorder is built.
#[cfg(feature = "metrics")]
struct Metrics {
    /// Ids per phase, in [`GAUGED`] order.
    ids: [metrics::Gauge; 4],
    /// Working ids waiting for a slot.
    queued: metrics::Gauge,
    launches: metrics::Counter,
    /// By reason, in [`REFUSALS`] order.
    refused: [metrics::Counter; 3],
    successes: metrics::Counter,
    /// By reason, in [`REASONS`] order.
    failures: [metrics::Counter; 6],
    /// Outcome `ok`, then `failed`.
    revokes: [metrics::Counter; 2],
    /// Outcome `success`, then `failed`.
    durations: [metrics::Histogram; 2],
    /// How long queued tasks waited for a slot.
    queue_waits: metrics::Histogram,
}

#[cfg(feature = "metrics")]
impl Metrics {
    fn register() -> Self {
        use metrics::{counter, describe_counter, describe_gauge, describe_histogram};
        use metrics::{gauge, histogram, Unit};
        use names::*;

        describe_gauge!(IDS, Unit::Count, "Ids recorded in each phase");
        describe_counter!(LAUNCHES, Unit::Count, "Launches accepted");
        describe_counter!(REFUSED, Unit::Count, "Launches refused, by reason");
        describe_counter!(SUCCESSES, Unit::Count, "Tasks that succeeded");
        describe_counter!(FAILURES, Unit::Count, "Tasks that failed, by reason");
        describe_counter!(REVOKES, Unit::Count, "Revokes that ended, by outcome");
        describe_histogram!(
            DURATION,
            Unit::Seconds,
            "Time a task ran: from its start (its launch, or the end of its wait for a running slot) to its success or failure"
        );
        describe_histogram!(
            QUEUE_WAIT,
            Unit::Seconds,
            "Time a task launched beyond max_running waited for a running slot"
        );
        Metrics {
            ids: GAUGED.map(|phase| gauge!(IDS, "state" => phase.as_str())),
            queued: gauge!(IDS, "state" => "queued"),
            launches: counter!(LAUNCHES),
            refused: REFUSALS.map(|reason| counter!(REFUSED, "reason" => reason)),
            successes: counter!(SUCCESSES),
            failures: REASONS.map(|reason| counter!(FAILURES, "reason" => reason.as_str())),
            revokes: ["ok", "failed"].map(|outcome| counter!(REVOKES, "outcome" => outcome)),
            durations: ["success", "failed"]
                .map(|outcome| histogram!(DURATION, "outcome" => outcome)),
            queue_waits: histogram!(QUEUE_WAIT),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Nothing is added to the store or to a guard without the features.
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    #[test]
    fn zero_sized_without_the_features() {
        use super::{Gauges, Observer, Watch};
        assert_eq!(std::mem::size_of::<Observer<u64>>(), 0);
        assert_eq!(std::mem::size_of::<Gauges>(), 0);
        assert_eq!(std::mem::size_of::<Watch>(), 0);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn slots_match_the_registration_order() {
        use super::*;
        for (i, phase) in GAUGED.into_iter().enumerate() {
            assert_eq!(gauge_slot(phase), Some(i));
        }
        assert_eq!(gauge_slot(Phase::NotFound), None);
        for (i, reason) in REASONS.into_iter().enumerate() {
            assert_eq!(reason_slot(reason), i);
        }
        let refused = |phase, closed| refusal_slot(Refused { phase, closed });
        assert_eq!(REFUSALS[refused(Phase::Working, false)], "working");
        assert_eq!(REFUSALS[refused(Phase::Success, false)], "success");
        assert_eq!(REFUSALS[refused(Phase::Revoking, false)], "success");
        assert_eq!(REFUSALS[refused(Phase::Failed, true)], "closed");
        assert_eq!(REFUSALS[refused(Phase::NotFound, true)], "closed");
    }
}
