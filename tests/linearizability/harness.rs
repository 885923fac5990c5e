//! One history being recorded: the operations the clients make, each timed on this
//! process's clock and logged with its answer.
//!
//! Six state changes are not calls the clients make, and are logged as operations of
//! their own, with an interval measured around the change:
//! - `start(id)`: from the launch's invocation until the future's first poll;
//! - `progress(id, value)`: from just before a client tells a held `launch_fenced`
//!   attempt to report until the task has seen its report return;
//! - `finish(id, end)`: a launched future ended on its own, from just before a client
//!   releases it until the client sees that the attempt ended: its handle resolved,
//!   or (without a handle) its own polling sees the id leave `Working` or sees a later
//!   launch of the id succeed, which can only follow the end, or (a retrying launch's
//!   failed first attempt) `status` shows the retry's wait;
//! - `finish(id, timed_out)`: a timeout fired, from the invocation of the timed launch
//!   until a client sees the task's handle resolve to `TimedOut`;
//! - `revoke_begin(id)`: from the `revoke_task_block` call until the revoke future
//!   starts (until the call returns, when it is refused);
//! - `revoke_end(id, end)`: from just before the revoke future returns until the call
//!   returns.
//!
//! For these to be the only ends, a cancel must never stop an attempt whose end
//! another client may log. So an attempt is cancelled only by the client that holds
//! its gate (taken out of the shared registry, so that nobody else releases it), and
//! when the attempt may have ended before the cancel takes effect (its timeout, or a
//! release just before the cancel, to race it), launches of the id are held back until
//! the cancel returns, and none may be in flight: the cancel then meets that attempt or
//! none. A cancel of an id whose gate nobody holds is made only while no attempt of the
//! id can run (no launch of it in flight, every attempt's end seen, launches held back),
//! so it must answer `false`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tasks_recorder::{LaunchOptions, TaskPhase, TaskState};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::common::bounded;
use crate::common::timing::{Log, Span, LOCAL};
use crate::gates::{gated, retry_later, split, unreserve, Gates, Held, How, Msg, RunningGate};
use crate::history::{Answer, Call, End, Event, Leaves, StatusView};
use crate::model::{RevokeOutcome, Subject};
use crate::workloads::{Rng, Workload};

/// One history being recorded.
pub(crate) struct Shared {
    pub(crate) subject: Subject,
    /// The recorder has a `max_running` limit: a future that has not started may wait
    /// for another attempt's end, so only started ones are released.
    pub(crate) limited: bool,
    pub(crate) log: Log<Event>,
    pub(crate) gates: Mutex<Gates>,
    /// The tasks running gated revokes.
    pub(crate) revokers: Mutex<Vec<JoinHandle<()>>>,
    /// The tasks awaiting waits that did not resolve at once.
    pub(crate) waiters: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A future that turns a panic of the inner future into `Err(())`.
struct Caught<F>(Pin<Box<F>>);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

impl Shared {
    /// Logs an operation of client `me` that answered `answer`.
    fn record(&self, me: usize, call: Call, span: Span<Instant>, answer: Answer) {
        self.log.push(Event {
            client: me,
            call,
            invoked: span.invoked,
            response: Some((span.returned, answer)),
        });
    }

    /// Counts a launch of `id` in flight, unless launches of it are blocked: then
    /// `false`, and the launch must not be made.
    fn reserve(&self, id: u64) -> bool {
        let mut gates = lock(&self.gates);
        if gates.blocking.get(&id).is_some_and(|&n| n > 0) {
            return false;
        }
        *gates.busy.entry(id).or_default() += 1;
        true
    }

    /// Blocks launches of `id` if exactly `busy` launches of it are in flight or
    /// attempts of it unseen to end (0 for an id that nothing can run for, 1 for the
    /// caller's held attempt alone); then no attempt of the id but those can run until
    /// [`unblock`](Self::unblock).
    fn block(&self, id: u64, busy: usize) -> bool {
        let mut gates = lock(&self.gates);
        let blocked = gates.busy.get(&id).copied().unwrap_or(0) == busy;
        if blocked {
            *gates.blocking.entry(id).or_default() += 1;
        }
        blocked
    }

    fn unblock(&self, id: u64) {
        *lock(&self.gates)
            .blocking
            .get_mut(&id)
            .expect("blocked before") -= 1;
    }

    /// A launch of `id` was refused, or the end of an attempt of it has been seen.
    fn unreserve(&self, id: u64) {
        unreserve(&mut lock(&self.gates), id);
    }

    /// Launches `id` as `how` says.
    pub(crate) async fn launch(&self, me: usize, id: u64, how: How) {
        if !self.reserve(id) {
            // A cancel of the id in flight holds its launches back: no new attempt may
            // meet it.
            return self.query(me, id).await;
        }
        let how = match how {
            How::Kept(_) => {
                let mut gates = lock(&self.gates);
                gates.kept += 1;
                How::Kept(gates.kept)
            }
            other => other,
        };
        let (release, gate) = mpsc::unbounded_channel::<Msg>();
        let started = LOCAL.mark();
        let start = started.clone();
        let invoked = LOCAL.now();
        let (result, handle) = match how {
            How::Plain => (
                self.subject.launch(id, gated(gate, None, start)).await,
                None,
            ),
            How::With(timeout_us) => {
                let options = match timeout_us {
                    Some(us) => LaunchOptions::new().timeout(Duration::from_micros(us)),
                    None => LaunchOptions::new(),
                };
                split(
                    self.subject
                        .launch_with(id, gated(gate, None, start), options)
                        .await,
                )
            }
            How::Kept(n) => {
                let task = async move {
                    let output = gated(gate, None, start).await;
                    output.map(|()| n).map_err(|()| format!("e{n}"))
                };
                split(self.subject.launch_kept(id, task).await)
            }
            How::Fenced => {
                let make = move |context| gated(gate, Some(context), start);
                split(self.subject.launch_fenced(id, make).await)
            }
            How::Retrying => {
                // The first attempt waits for the gate; a second, an hour later, would
                // fail at once.
                let mut gate = Some(gate);
                let make = move |context| {
                    let gate = gate.take();
                    let start = start.clone();
                    async move {
                        match gate {
                            Some(gate) => gated(gate, Some(context), start).await,
                            None => Err(()),
                        }
                    }
                };
                split(self.subject.launch_retrying(id, make, retry_later()).await)
            }
        };
        let span = LOCAL.since(invoked);
        let (call, leaves) = match how {
            How::Plain => (Call::Launch(id), Leaves::Nothing),
            How::With(timeout_us) => (Call::LaunchWith(id, timeout_us), Leaves::Nothing),
            How::Kept(n) => (Call::LaunchKept(id, n), Leaves::Kept(n)),
            How::Fenced => (Call::LaunchFenced(id), Leaves::Nothing),
            How::Retrying => (Call::LaunchRetrying(id), Leaves::Retry),
        };
        {
            let mut gates = lock(&self.gates);
            if result.is_ok() {
                gates.running.push(RunningGate {
                    id,
                    release: Some(release),
                    handle,
                    launched: span.invoked,
                    timed: matches!(how, How::With(Some(_))),
                    leaves,
                    reports: how == How::Fenced,
                    waiting: false,
                    started,
                    start_logged: false,
                });
                *gates.launched.entry(id).or_default() += 1;
            } else {
                unreserve(&mut gates, id);
            }
        }
        self.record(me, call, span, Answer::Launch(result));
    }

    /// Takes a random running gate out of the registry.
    /// A gate whose future has started is logged as started once, here: every gate
    /// is taken at least once, by the drain at the latest.
    pub(crate) fn take_gate(&self, me: usize, rng: &mut Rng) -> Option<Held> {
        let held = {
            let mut gates = lock(&self.gates);
            if gates.running.is_empty() {
                return None;
            }
            let pick = rng.below(gates.running.len() as u64) as usize;
            let gate = gates.running.swap_remove(pick);
            let launches = gates.launched[&gate.id];
            Held { gate, launches }
        };
        let mut held = held;
        if let (Some(at), false) = (held.gate.started.get(), held.gate.start_logged) {
            held.gate.start_logged = true;
            let span = Span {
                invoked: held.gate.launched,
                returned: at,
            };
            self.record(me, Call::Start(held.gate.id), span, Answer::Finished);
        }
        Some(held)
    }

    /// Puts a held gate back in the registry.
    pub(crate) fn put_back(&self, gate: RunningGate) {
        lock(&self.gates).running.push(gate);
    }

    /// Releases a held attempt to end as the workload says (a timed one is left to
    /// time out, but for `release_timed`%) and logs its end.
    pub(crate) async fn finish(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let end = rng.end(w.finish_ok, w.finish_panic);
        let unstarted = self.limited && !held.gate.started();
        if unstarted && !held.gate.timed {
            // It may wait for a slot that only another client's release frees.
            let id = held.gate.id;
            self.put_back(held.gate);
            return self.status(me, id).await;
        }
        if held.gate.leaves == Leaves::Retry && end != End::Ok {
            return self.fail_to_retry(me, held, end).await;
        }
        let released = if held.gate.timed && (unstarted || !rng.percent(w.release_timed)) {
            None
        } else {
            Some(held.gate.open(end))
        };
        self.conclude(me, held, released).await;
    }

    /// Fails a retrying launch's first attempt, which leaves the launch waiting for its
    /// next; logs the end once `status` shows the wait, and puts the launch back in the
    /// registry for a cancel to end.
    async fn fail_to_retry(&self, me: usize, held: Held, end: End) {
        let Held { mut gate, .. } = held;
        let id = gate.id;
        let (from, _) = gate.open(end);
        // Nothing else ends the attempt, and no other launch of the id can succeed
        // while this one waits: `Working` with a next attempt's time is this retry.
        let span = bounded("a failed attempt to retry", async {
            loop {
                let status = self.subject.status(id).await;
                assert_eq!(
                    status.phase,
                    TaskPhase::Working,
                    "a retrying launch of id {id} ended after its first attempt failed"
                );
                if status.retry_at.is_some() {
                    return LOCAL.since(from);
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        gate.waiting = true;
        self.put_back(gate);
        self.record(
            me,
            Call::Finish(id, end, Leaves::Retry),
            span,
            Answer::Finished,
        );
    }

    /// Has a held attempt of `launch_fenced` report a progress, logged from the report
    /// until the task has seen it return; another held gate goes back untouched and a
    /// status read is made instead (also where reports may show late: Redis).
    pub(crate) async fn report(&self, me: usize, held: Held, rng: &mut Rng) {
        let Held { gate, .. } = held;
        let id = gate.id;
        let reports =
            gate.reports && self.subject.exact_progress() && (gate.started() || !self.limited);
        let release = gate.release.clone().filter(|_| reports);
        let Some(release) = release else {
            self.put_back(gate);
            return self.status(me, id).await;
        };
        // Held until the report returned: nobody else ends the attempt meanwhile.
        let value = rng.below(1000);
        let (reported, seen) = oneshot::channel();
        let invoked = LOCAL.now();
        release
            .send(Msg::Progress(value, reported))
            .expect("a running attempt listens to its gate");
        bounded("a progress report", seen)
            .await
            .expect("the task reports before it ends");
        let span = LOCAL.since(invoked);
        self.put_back(gate);
        self.record(me, Call::Progress(id, value), span, Answer::Finished);
    }

    pub(crate) async fn status(&self, me: usize, id: u64) {
        let (span, status) = LOCAL.timed(|| self.subject.status(id)).await;
        let view = StatusView::of(&status, self.subject.exact_progress());
        let call = Call::Status(id, view.queued);
        self.record(me, call, span, Answer::Status(view));
    }

    /// Waits until a held attempt has ended on its own, after its gate was `released`
    /// (when, and how) or by its timeout, and logs the end as a `finish` operation.
    async fn conclude(&self, me: usize, held: Held, released: Option<(Instant, End)>) {
        let Held { mut gate, launches } = held;
        let id = gate.id;
        let (end, from, seen) = match gate.handle.take() {
            Some(handle) => {
                // The record is final before the handle resolves.
                let output = bounded("a task handle to resolve", handle.0).await;
                let seen = LOCAL.now();
                let Some(ended) = output else {
                    panic!("an attempt of id {id} that nobody cancelled was cancelled")
                };
                match (ended, gate.timed, released) {
                    // The timeout may fire from the launch's invocation on.
                    (End::TimedOut, true, _) => (End::TimedOut, gate.launched, seen),
                    (_, _, Some((at, end))) if end == ended => (end, at, seen),
                    _ => panic!(
                        "an attempt of id {id} ended {ended:?}, but its gate was released \
                         with {released:?} and its launch had a timeout: {}",
                        gate.timed
                    ),
                }
            }
            None => {
                let (at, end) =
                    released.expect("an attempt without a handle is concluded once released");
                // The id is Working from the launch until this future's end (which
                // only its release makes: no timeout, no cancel), and no other launch of
                // it can succeed in between: so reading anything but Working, or seeing
                // that a later launch succeeded, means the end has been recorded.
                let seen = bounded("a released future to end", async {
                    loop {
                        let state = self.subject.query_fresh(id).await;
                        if state != TaskState::Working
                            || lock(&self.gates).launched.get(&id) != Some(&launches)
                        {
                            return LOCAL.now();
                        }
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                (end, at, seen)
            }
        };
        let leaves = gate.leaves;
        drop(gate);
        self.unreserve(id);
        let span = Span {
            invoked: from,
            returned: seen,
        };
        self.record(me, Call::Finish(id, end, leaves), span, Answer::Finished);
    }

    /// Cancels a held attempt, its gate released just before for `cancel_race`%, and
    /// logs the cancel and, if the attempt ended on its own first, its end.
    pub(crate) async fn cancel_held(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let id = held.gate.id;
        // A retrying attempt is not raced: failing just before the cancel, it would
        // retry unseen (its next attempt's number is what status reads after).
        let mut race = rng.percent(w.cancel_race) && held.gate.leaves != Leaves::Retry;
        let end = rng.end(w.finish_ok, w.finish_panic);
        // A cancel stops whatever attempt of the id runs when it takes effect. If the
        // held one may have ended by then (by its timeout, or by the release just
        // before), no other may have begun: launches of the id are blocked meanwhile,
        // and no launch of it may be in flight. Otherwise the cancel is made on a shut
        // untimed attempt, which nothing else ends, or (timed) not at all.
        let timed = held.gate.timed;
        let blocked = (race || timed) && self.block(id, 1);
        if !blocked {
            if timed {
                self.put_back(held.gate);
                return self.quick(me, id).await;
            }
            race = false;
        }
        let mut released = race.then(|| held.gate.open(end));
        let (span, cancelled) = LOCAL
            .timed(|| bounded("a cancel to return", self.subject.cancel(id)))
            .await;
        // The attempt has ended (with a correct recorder): a new one may begin.
        if blocked {
            self.unblock(id);
        }
        self.record(me, Call::Cancel(id), span, Answer::Cancelled(cancelled));
        if rng.percent(w.query_after_cancel) {
            self.query(me, id).await;
        }
        if cancelled {
            // The attempt ended by this cancel, which is its end in the model: nothing
            // else is logged for it.
            if let Some(handle) = held.gate.handle.take() {
                let output = bounded("a cancelled task's handle to resolve", handle.0).await;
                let seen = LOCAL.now();
                if let Some(ended) = output {
                    // It ended otherwise, so cancel should have answered false (a faulty
                    // subject answers before it knows): log that end too, and let the
                    // checker judge.
                    let from = match (ended, released) {
                        (End::TimedOut, _) | (_, None) => held.gate.launched,
                        (_, Some((at, _))) => at,
                    };
                    let call = Call::Finish(id, ended, held.gate.leaves);
                    let span = Span {
                        invoked: from,
                        returned: seen,
                    };
                    self.record(me, call, span, Answer::Finished);
                }
            }
            drop(held);
            self.unreserve(id);
        } else {
            // It ended on its own first: released, or timed out. An untimed attempt
            // still shut (which a correct recorder never leaves) is released now, as a
            // normal finish.
            if released.is_none() && !timed {
                released = Some(held.gate.open(end));
            }
            self.conclude(me, held, released).await;
        }
    }

    /// Cancels `id` if no attempt of it can run meanwhile (no launch of it in flight,
    /// the end of every attempt seen; launches of it are blocked until the cancel
    /// returns), else makes a quick query of it.
    pub(crate) async fn cancel_free(&self, me: usize, id: u64) {
        if !self.block(id, 0) {
            return self.quick(me, id).await;
        }
        let (span, cancelled) = LOCAL
            .timed(|| bounded("a cancel to return", self.subject.cancel(id)))
            .await;
        self.unblock(id);
        self.record(me, Call::Cancel(id), span, Answer::Cancelled(cancelled));
    }

    pub(crate) async fn query(&self, me: usize, id: u64) {
        let (span, state) = LOCAL.timed(|| self.subject.query(id)).await;
        self.record(me, Call::Query(id), span, Answer::State(state));
    }

    pub(crate) async fn quick(&self, me: usize, id: u64) {
        let (span, state) = LOCAL.timed(|| self.subject.quick(id)).await;
        self.record(me, Call::Quick(id), span, Answer::State(state));
    }

    pub(crate) async fn count(&self, me: usize, state: TaskState) {
        let (span, n) = LOCAL.timed(|| self.subject.count(state)).await;
        self.record(me, Call::Count(state), span, Answer::Count(n));
    }

    pub(crate) async fn counts(&self, me: usize) {
        let (span, c) = LOCAL.timed(|| self.subject.counts()).await;
        let answer = Answer::Counts([c.working, c.success, c.failed, c.revoking]);
        self.record(me, Call::Counts, span, answer);
    }

    /// A blocking revoke whose future ends as `release` says. Accepted, it is logged as
    /// `revoke_begin` and `revoke_end`; refused, as a refused `revoke_begin`.
    pub(crate) async fn revoke(&self, me: usize, id: u64, release: Release) {
        let (began, ended) = (LOCAL.mark(), LOCAL.mark());
        let end_seen = Arc::new(OnceLock::<End>::new());
        let (began_in, ended_in, end_in) = (began.clone(), ended.clone(), end_seen.clone());
        let future = async move {
            began_in.set();
            let end = match release {
                Release::Now(end) => end,
                Release::Gate(gate) => gate.await.unwrap_or(End::Err),
            };
            ended_in.set();
            let _ = end_in.set(end);
            end.output()
        };
        let (span, result) = LOCAL
            .timed(|| Caught(Box::pin(self.subject.revoke_block(id, future))))
            .await;
        let outcome = result.unwrap_or(RevokeOutcome::TaskError);
        match began.get() {
            None => {
                let answer = Answer::RevokeBegin(Err(outcome));
                self.record(me, Call::RevokeBegin(id), span, answer);
            }
            Some(began) => {
                let (ended, end) = ended
                    .get()
                    .zip(end_seen.get().copied())
                    .expect("a started revoke future ran to its end");
                let begin = Span {
                    invoked: span.invoked,
                    returned: began,
                };
                self.record(
                    me,
                    Call::RevokeBegin(id),
                    begin,
                    Answer::RevokeBegin(Ok(())),
                );
                let end_span = Span {
                    invoked: ended,
                    returned: span.returned,
                };
                let answer = Answer::RevokeEnd(outcome);
                self.record(me, Call::RevokeEnd(id, end), end_span, answer);
            }
        }
    }
}

/// When a revoke future ends.
pub(crate) enum Release {
    /// At once, this way.
    Now(End),
    /// When a message comes through the gate.
    Gate(oneshot::Receiver<End>),
}

/// Starts a revoke whose future waits for a release, in a task of its own (any client
/// may release it, including this one).
pub(crate) fn revoke_gated(shared: &Arc<Shared>, me: usize, id: u64) {
    let (release, gate) = oneshot::channel();
    let ticket = {
        let mut gates = lock(&shared.gates);
        gates.next_ticket += 1;
        let ticket = gates.next_ticket;
        gates.revokes.push((ticket, release));
        ticket
    };
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        task_shared.revoke(me, id, Release::Gate(gate)).await;
        lock(&task_shared.gates)
            .revokes
            .retain(|&(t, _)| t != ticket);
    });
    lock(&shared.revokers).push(task);
}

/// Waits for `id`. The wait is polled once here, which registers its waiter if the id
/// is running; if it does not resolve at once, a task of its own awaits it, so that the
/// client goes on (the release it waits for may be this client's to make).
pub(crate) async fn start_wait(shared: &Arc<Shared>, me: usize, id: u64) {
    let subject = shared.subject.clone();
    let invoked = LOCAL.now();
    let mut wait = Box::pin(async move { subject.wait(id).await });
    let now = std::future::poll_fn(|cx| {
        Poll::Ready(match wait.as_mut().poll(cx) {
            Poll::Ready(settled) => Some(settled),
            Poll::Pending => None,
        })
    })
    .await;
    if let Some((phase, reason)) = now {
        let answer = Answer::Settled(phase, reason);
        shared.record(me, Call::Wait(id), LOCAL.since(invoked), answer);
        return;
    }
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        let (phase, reason) = bounded("a wait to resolve", wait).await;
        let answer = Answer::Settled(phase, reason);
        task_shared.record(me, Call::Wait(id), LOCAL.since(invoked), answer);
    });
    lock(&shared.waiters).push(task);
}
