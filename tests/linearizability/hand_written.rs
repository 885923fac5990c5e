//! The checker on histories written by hand: linearizable ones it must accept, and
//! ones it must reject with a report that says why.

use std::time::{Duration, Instant};

use async_tasks_recorder::{FailureReason, TaskPhase, TaskState};

use crate::checker::{check, check_on};
use crate::history::{Answer, Call, End, Event, KeptCode, Leaves, StatusView};
use crate::model::RevokeOutcome;

/// Hand-written histories: times in microseconds from `base`.
struct Hand {
    base: Instant,
    events: Vec<Event>,
}

impl Hand {
    fn new() -> Self {
        Hand {
            base: Instant::now(),
            events: Vec::new(),
        }
    }

    fn at(&self, micros: u64) -> Instant {
        self.base + Duration::from_micros(micros)
    }

    fn op(mut self, client: usize, call: Call, span: (u64, u64), answer: Answer) -> Self {
        let (invoked, returned) = (self.at(span.0), self.at(span.1));
        self.events.push(Event {
            client,
            call,
            invoked,
            response: Some((returned, answer)),
        });
        self
    }

    fn pending(mut self, client: usize, call: Call, invoked: u64) -> Self {
        let invoked = self.at(invoked);
        self.events.push(Event {
            client,
            call,
            invoked,
            response: None,
        });
        self
    }
}

#[test]
fn checker_on_hand_written_histories() {
    use Answer as A;
    use Call as C;
    use TaskState::{Failed, NotFound, Success, Working};

    // Concurrent and linearizable: the first query overlaps the launch and is placed
    // before it; the query at 16..25 overlaps the future's end and is placed after it;
    // the launch during the revoke is refused with Success; the last query overlaps the
    // revoke's end and is placed before it.
    let good = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Query(1), (5, 15), A::State(NotFound))
        .op(2, C::Quick(1), (6, 20), A::State(Working))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (12, 30),
            A::Finished,
        )
        .op(1, C::Query(1), (16, 25), A::State(Success))
        .op(2, C::Count(Success), (21, 28), A::Count(1))
        .op(1, C::Counts, (26, 29), A::Counts([0, 1, 0, 0]))
        .op(0, C::RevokeBegin(1), (31, 35), A::RevokeBegin(Ok(())))
        .op(2, C::Launch(1), (36, 38), A::Launch(Err(Success)))
        .op(
            1,
            C::RevokeBegin(1),
            (36, 39),
            A::RevokeBegin(Err(RevokeOutcome::Revoking)),
        )
        .op(
            0,
            C::RevokeEnd(1, End::Ok),
            (40, 45),
            A::RevokeEnd(RevokeOutcome::Ok),
        )
        .op(1, C::Query(1), (41, 50), A::State(Success))
        .op(2, C::Query(1), (46, 50), A::State(NotFound))
        .op(2, C::Launch(0), (51, 52), A::Launch(Ok(())))
        .op(
            2,
            C::Finish(0, End::Panic, Leaves::Nothing),
            (53, 60),
            A::Finished,
        )
        .op(1, C::Query(0), (61, 62), A::State(Failed))
        .pending(0, C::Launch(2), 55)
        .op(1, C::Quick(2), (63, 64), A::State(Working));
    check(&good.events).expect("a linearizable history");

    // A pending launch may have taken effect...
    let pending =
        Hand::new()
            .pending(0, C::Launch(1), 0)
            .op(1, C::Query(1), (10, 20), A::State(Working));
    check(&pending.events).expect("a pending launch that took effect");
    // ...or not.
    let pending =
        Hand::new()
            .pending(0, C::Launch(1), 0)
            .op(1, C::Query(1), (10, 20), A::State(NotFound));
    check(&pending.events).expect("a pending launch that did not take effect");

    // A query that starts after a launch returned Ok cannot see NotFound (no revoke).
    let lost_launch = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Quick(2), (5, 25), A::State(Working))
        .op(1, C::Query(1), (20, 30), A::State(NotFound));
    let report = check(&lost_launch.events).expect_err("a lost launch");
    assert!(report.contains("NOT linearizable"), "{report}");
    assert!(
        report.contains("answered not_found, the model says working"),
        "{report}"
    );

    // Real-time order counts: the same two operations, overlapping, are fine.
    let overlapping = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Query(1), (9, 30), A::State(NotFound));
    check(&overlapping.events).expect("an overlapping query may come first");

    // A second success: the id succeeded and no revoke happened, yet a launch is let in.
    let double = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(1, C::Launch(1), (4, 5), A::Launch(Ok(())));
    check(&double.events).expect_err("a second success");

    // A stale read: Working is read after a query already saw the end.
    let stale = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (2, 5),
            A::Finished,
        )
        .op(1, C::Query(1), (4, 6), A::State(Failed))
        .op(1, C::Query(1), (7, 8), A::State(Working));
    check(&stale.events).expect_err("a stale read");

    // A count must agree with the other ids' operations: only one id ever succeeded.
    let counts = Hand::new()
        .op(0, C::Launch(0), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(0, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(1, C::Count(Success), (4, 5), A::Count(2));
    check(&counts.events).expect_err("a count of ids that never succeeded");
}

#[test]
fn checker_on_hand_written_status_reads() {
    use Answer as A;
    use Call as C;
    let view = |phase, attempts, last_failure, kept, progress, retry_pending| StatusView {
        phase,
        attempts,
        last_failure,
        kept,
        progress,
        retry_pending,
        queued: false,
    };
    let working = |attempts, progress| {
        view(
            TaskPhase::Working,
            Some(attempts),
            None,
            None,
            progress,
            false,
        )
    };

    // A kept value, a progress report, a retry's wait, each read back.
    let history = |kept: StatusView, progress: StatusView, waiting: StatusView| {
        Hand::new()
            .op(0, C::LaunchKept(1, 7), (0, 10), A::Launch(Ok(())))
            .op(
                0,
                C::Finish(1, End::Ok, Leaves::Kept(7)),
                (11, 20),
                A::Finished,
            )
            .op(1, C::Status(1, false), (21, 30), A::Status(kept))
            .op(0, C::LaunchFenced(2), (31, 40), A::Launch(Ok(())))
            .op(
                1,
                C::Status(2, false),
                (41, 45),
                A::Status(working(1, None)),
            )
            .op(0, C::Progress(2, 5), (46, 50), A::Finished)
            .op(1, C::Status(2, false), (51, 55), A::Status(progress))
            .op(0, C::LaunchRetrying(0), (56, 60), A::Launch(Ok(())))
            .op(
                0,
                C::Finish(0, End::Err, Leaves::Retry),
                (61, 70),
                A::Finished,
            )
            .op(1, C::Status(0, false), (71, 80), A::Status(waiting))
            .events
    };
    let kept = view(
        TaskPhase::Success,
        None,
        None,
        Some(KeptCode::Output(7)),
        None,
        false,
    );
    let progress = working(1, Some(5));
    let waiting = view(
        TaskPhase::Working,
        Some(2),
        Some(FailureReason::Error),
        None,
        None,
        true,
    );
    check(&history(kept, progress, waiting)).expect("status reads what happened");

    let other_value = view(
        TaskPhase::Success,
        None,
        None,
        Some(KeptCode::Output(8)),
        None,
        false,
    );
    let no_value = view(TaskPhase::Success, None, None, None, None, false);
    let no_wait = working(1, None);
    let wrong = [
        (
            history(other_value, progress, waiting),
            "another launch's kept value",
        ),
        (history(no_value, progress, waiting), "a kept value lost"),
        (
            history(kept, working(1, None), waiting),
            "a reported progress lost",
        ),
        (
            history(kept, working(1, Some(4)), waiting),
            "another progress",
        ),
        (history(kept, progress, no_wait), "a retry's wait not shown"),
    ];
    for (events, what) in wrong {
        let report = check(&events).expect_err(what);
        assert!(report.contains("NOT linearizable"), "{what}: {report}");
    }

    // Queued until its future starts, with a limit only, and never queued again.
    let queued = |start: (u64, u64), reads: [bool; 3]| {
        let read = |queued| {
            A::Status(view(TaskPhase::Working, Some(1), None, None, None, false))
                .with_queued(queued)
        };
        Hand::new()
            .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
            .op(1, C::Status(1, reads[0]), (11, 20), read(reads[0]))
            .op(0, C::Start(1), start, A::Finished)
            .op(1, C::Status(1, reads[1]), (31, 40), read(reads[1]))
            .op(1, C::Status(1, reads[2]), (41, 50), read(reads[2]))
            .events
    };
    check_on(&queued((0, 30), [true, false, false]), true).expect("queued, then started");
    check_on(&queued((0, 30), [false, false, false]), true).expect("never queued");
    check_on(&queued((0, 45), [true, true, false]), true).expect("started during a read");
    // The record leaves the queue before the future's first poll.
    check_on(&queued((0, 50), [true, false, false]), true).expect("out of the queue first");
    let wrong = [
        (
            queued((0, 30), [true, true, false]),
            true,
            "queued after its start",
        ),
        (queued((0, 45), [false, true, false]), true, "queued again"),
        (
            queued((0, 30), [true, false, false]),
            false,
            "queued without a limit",
        ),
    ];
    for (events, may_queue, what) in wrong {
        let report = check_on(&events, may_queue).expect_err(what);
        assert!(report.contains("NOT linearizable"), "{what}: {report}");
    }
}

impl Answer {
    /// A status answer with its queued flag set so.
    fn with_queued(self, queued: bool) -> Answer {
        match self {
            Answer::Status(view) => Answer::Status(StatusView { queued, ..view }),
            other => other,
        }
    }
}

#[test]
fn checker_on_hand_written_waits_cancels_and_timeouts() {
    use Answer as A;
    use Call as C;
    use FailureReason::{Cancelled, Error, TimedOut};
    use TaskState::{Failed, Success, Working};

    // A wait answers the outcome of the phase it waited for, although the id was
    // launched again before the wait returned.
    let moved_on = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            1,
            C::Wait(1),
            (2, 30),
            A::Settled(TaskPhase::Failed, Some(Error)),
        )
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (3, 5),
            A::Finished,
        )
        .op(0, C::Launch(1), (6, 7), A::Launch(Ok(())))
        .op(2, C::Query(1), (8, 9), A::State(Working));
    check(&moved_on.events).expect("a wait for a phase the id has left since");

    // A revoked id: the wait of the revoke answers NotFound.
    let revoked = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(0, C::RevokeBegin(1), (4, 5), A::RevokeBegin(Ok(())))
        .op(
            1,
            C::Wait(1),
            (6, 20),
            A::Settled(TaskPhase::NotFound, None),
        )
        .op(
            0,
            C::RevokeEnd(1, End::Ok),
            (10, 12),
            A::RevokeEnd(RevokeOutcome::Ok),
        );
    check(&revoked.events).expect("a wait for a revoke");

    // A wait that returns while the id runs, all along, cannot answer.
    let early = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(1, C::Wait(1), (2, 3), A::Settled(TaskPhase::Success, None))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (4, 5),
            A::Finished,
        );
    let report = check(&early.events).expect_err("a wait that did not wait");
    assert!(
        report.contains("wait(1): cannot happen in this state"),
        "{report}"
    );

    // The failure reason counts.
    let reason = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(
            1,
            C::Wait(1),
            (4, 5),
            A::Settled(TaskPhase::Failed, Some(Cancelled)),
        );
    let report = check(&reason.events).expect_err("a wrong failure reason");
    assert!(
        report.contains("answered failed (cancelled), the model says failed (error)"),
        "{report}"
    );

    // A cancel that answers true is the attempt's end.
    let cancelled = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            1,
            C::Wait(1),
            (2, 20),
            A::Settled(TaskPhase::Failed, Some(Cancelled)),
        )
        .op(0, C::Cancel(1), (3, 10), A::Cancelled(true))
        .op(0, C::Query(1), (11, 12), A::State(Failed))
        .op(0, C::Launch(1), (13, 14), A::Launch(Ok(())));
    check(&cancelled.events).expect("a cancelled attempt");

    // Two cancels cannot both stop one attempt.
    let twice = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 5), A::Cancelled(true))
        .op(1, C::Cancel(1), (6, 8), A::Cancelled(true));
    check(&twice.events).expect_err("one attempt cancelled twice");

    // A cancel that answered true returns after the attempt ended.
    let unfinished = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 3), A::Cancelled(true))
        .op(0, C::Query(1), (4, 5), A::State(Working));
    check(&unfinished.events).expect_err("a cancel that did not wait for the end");

    // A cancel that answers false: the attempt ended on its own inside its interval...
    let lost_race = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 10), A::Cancelled(false))
        .op(
            1,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (3, 6),
            A::Finished,
        )
        .op(0, C::Query(1), (11, 12), A::State(Success));
    check(&lost_race.events).expect("a cancel that lost the race");
    // ...and cannot answer so while the id is Working all along.
    let refused = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 3), A::Cancelled(false))
        .op(0, C::Query(1), (4, 5), A::State(Working));
    check(&refused.events).expect_err("a Working id that cancel did not stop");

    // A timeout may fire as soon as the timed launch is invoked, before it returns.
    let timed = Hand::new()
        .op(0, C::LaunchWith(1, Some(0)), (0, 10), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::TimedOut, Leaves::Nothing),
            (0, 20),
            A::Finished,
        )
        .op(1, C::Query(1), (5, 6), A::State(Failed))
        .op(
            1,
            C::Wait(1),
            (7, 8),
            A::Settled(TaskPhase::Failed, Some(TimedOut)),
        );
    check(&timed.events).expect("a timeout during the launch");
}
