//! Histories recorded by several processes, and a checker of linearizability per id.
//!
//! Each event is one operation on one id with its invocation and response instants
//! on `CLOCK_MONOTONIC` (`MACHINE` of `tests/common/timing.rs`: one clock for every
//! process of the machine), written as one line so that processes can report them.
//! Linearizability is local (a history is linearizable if each id's sub-history is),
//! so [`check_id`] checks each id alone against the sequential model of one record: a
//! search for an order of the id's operations that respects real time (an operation
//! that returned before another was invoked comes first) and in which every answer is
//! the model's. An operation without a response (its reply was lost, or its process
//! died) may take effect at any point after its invocation, or never.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::fmt;

/// A record's phase in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ph {
    NotFound,
    Working,
    Success,
    Failed,
    Revoking,
}

impl Ph {
    pub fn name(self) -> &'static str {
        match self {
            Ph::NotFound => "not_found",
            Ph::Working => "working",
            Ph::Success => "success",
            Ph::Failed => "failed",
            Ph::Revoking => "revoking",
        }
    }

    pub fn parse(name: &str) -> Option<Ph> {
        [
            Ph::NotFound,
            Ph::Working,
            Ph::Success,
            Ph::Failed,
            Ph::Revoking,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// The 2.x state a launch refusal names.
    fn state(self) -> &'static str {
        match self {
            Ph::Revoking => "success",
            other => other.name(),
        }
    }
}

/// What a record keeps, as the histories' launches keep it (every launch keeps the
/// end of its task: an output on success, a message on failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keeps {
    Nothing,
    Output,
    Message,
}

impl Keeps {
    fn mark(self) -> &'static str {
        match self {
            Keeps::Nothing => "",
            Keeps::Output => "+o",
            Keeps::Message => "+m",
        }
    }

    /// The kind of what a status read found kept.
    pub fn of(kept: Option<&async_tasks_recorder::Kept>) -> Keeps {
        match kept {
            None => Keeps::Nothing,
            Some(k) if k.output().is_some() => Keeps::Output,
            Some(_) => Keeps::Message,
        }
    }
}

/// A status read's answer: the phase, and what the record kept.
pub type Read = (Ph, Keeps);

fn read_text(read: Read) -> String {
    format!("{}{}", read.0.name(), read.1.mark())
}

fn read_of(text: &str) -> Option<Read> {
    let (name, keeps) = match text.len().checked_sub(2).map(|at| text.split_at(at)) {
        Some((name, "+o")) => (name, Keeps::Output),
        Some((name, "+m")) => (name, Keeps::Message),
        _ => (text, Keeps::Nothing),
    };
    Some((Ph::parse(name)?, keeps))
}

/// What an operation was and what it answered (`None`: no answer came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A launch: `Ok`, or refused with the 2.x state.
    Launch(Option<Result<(), String>>),
    /// The launched future returned (`ok`), and its end was recorded.
    Finish(bool),
    /// A status read: the phase and what the record kept.
    Query(Option<Read>),
    /// A revoke's start: `Ok`, or refused (`not_success` or `revoking`).
    RevokeBegin(Option<Result<(), String>>),
    /// The revoke future returned (`ok`), and its end was recorded.
    RevokeEnd(bool),
    /// The running phase's lease may have run out (its holder said it lost it):
    /// `Working` becomes `Failed`, `Revoking` is `Success` again. Never has a response:
    /// it may take effect at any point after its invocation, or never.
    Expire,
}

/// One operation on one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub history: u64,
    /// Which process and client issued it, for reports.
    pub client: String,
    pub id: u64,
    pub op: Op,
    pub invoked: u64,
    /// `None` when no response came.
    pub responded: Option<u64>,
}

fn answer_text(a: &Option<Result<(), String>>) -> String {
    match a {
        None => "?".into(),
        Some(Ok(())) => "ok".into(),
        Some(Err(e)) => e.clone(),
    }
}

fn answer_of(text: &str) -> Option<Result<(), String>> {
    match text {
        "?" => None,
        "ok" => Some(Ok(())),
        other => Some(Err(other.to_string())),
    }
}

impl fmt::Display for Event {
    /// `ev <history> <client> <id> <kind> <answer> <invoked> <responded|->`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, answer) = match &self.op {
            Op::Launch(a) => ("L", answer_text(a)),
            Op::Finish(ok) => ("F", if *ok { "ok" } else { "err" }.to_string()),
            Op::Query(r) => ("Q", r.map_or_else(|| "?".to_string(), read_text)),
            Op::RevokeBegin(a) => ("B", answer_text(a)),
            Op::RevokeEnd(ok) => ("E", if *ok { "ok" } else { "err" }.to_string()),
            Op::Expire => ("X", "-".to_string()),
        };
        let responded = self
            .responded
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        write!(
            f,
            "ev {} {} {} {kind} {answer} {} {responded}",
            self.history, self.client, self.id, self.invoked
        )
    }
}

impl Event {
    /// Parses what `Display` wrote (without the leading `ev `, or with it).
    pub fn parse(line: &str) -> Option<Event> {
        let line = line.strip_prefix("ev ").unwrap_or(line);
        let w: Vec<&str> = line.split(' ').collect();
        let [history, client, id, kind, answer, invoked, responded] = w.as_slice() else {
            return None;
        };
        let op = match *kind {
            "L" => Op::Launch(answer_of(answer)),
            "F" => Op::Finish(*answer == "ok"),
            "Q" => Op::Query(read_of(answer)),
            "B" => Op::RevokeBegin(answer_of(answer)),
            "E" => Op::RevokeEnd(*answer == "ok"),
            "X" => Op::Expire,
            _ => return None,
        };
        Some(Event {
            history: history.parse().ok()?,
            client: client.to_string(),
            id: id.parse().ok()?,
            op,
            invoked: invoked.parse().ok()?,
            responded: if *responded == "-" {
                None
            } else {
                Some(responded.parse().ok()?)
            },
        })
    }
}

/// The record after `op` in `(ph, keeps)`, if the model allows it with that answer.
/// An operation without an answer takes any move it could make. What a record keeps
/// is made by its attempt's end and lives as long as the phase it made (a revoke that
/// fails, or ends with its lease, puts the success back with it); a lease's expiry
/// keeps nothing.
fn step((ph, keeps): Read, op: &Op) -> Option<Read> {
    let launchable = matches!(ph, Ph::NotFound | Ph::Failed);
    match op {
        Op::Launch(Some(Ok(()))) | Op::Launch(None) if launchable => {
            Some((Ph::Working, Keeps::Nothing))
        }
        Op::Launch(Some(Err(state))) if !launchable && state == ph.state() => Some((ph, keeps)),
        Op::Finish(ok) if ph == Ph::Working => Some(if *ok {
            (Ph::Success, Keeps::Output)
        } else {
            (Ph::Failed, Keeps::Message)
        }),
        Op::Query(Some(read)) if *read == (ph, keeps) => Some((ph, keeps)),
        Op::Query(None) => Some((ph, keeps)),
        Op::RevokeBegin(Some(Ok(()))) | Op::RevokeBegin(None) if ph == Ph::Success => {
            Some((Ph::Revoking, keeps))
        }
        Op::RevokeBegin(Some(Err(why))) => match (why.as_str(), ph) {
            ("revoking", Ph::Revoking) => Some((ph, keeps)),
            ("not_success", p) if p != Ph::Success && p != Ph::Revoking => Some((ph, keeps)),
            _ => None,
        },
        Op::RevokeEnd(ok) if ph == Ph::Revoking => Some(if *ok {
            (Ph::NotFound, Keeps::Nothing)
        } else {
            (Ph::Success, keeps)
        }),
        Op::Expire if ph == Ph::Working => Some((Ph::Failed, Keeps::Nothing)),
        Op::Expire if ph == Ph::Revoking => Some((Ph::Success, keeps)),
        _ => None,
    }
}

/// Checks the events of one id, all of one history, starting from `NotFound`.
/// `Err` describes the history when no order explains it.
pub fn check_id(events: &[Event]) -> Result<(), String> {
    assert!(
        events.len() <= 64,
        "a history of one id has at most 64 events"
    );
    let n = events.len();
    // Every event with a response must be placed; the others may be left out.
    let must: u64 = (0..n)
        .filter(|&i| events[i].responded.is_some())
        .fold(0, |m, i| m | (1 << i));
    let mut seen: HashSet<(u64, Read)> = HashSet::new();
    let mut stack = vec![(0u64, (Ph::NotFound, Keeps::Nothing))];
    while let Some((done, ph)) = stack.pop() {
        if done & must == must {
            return Ok(());
        }
        if !seen.insert((done, ph)) {
            continue;
        }
        // The earliest response among the events not placed yet: nothing invoked
        // after it can come before it.
        let bound = (0..n)
            .filter(|&i| done & (1 << i) == 0)
            .filter_map(|i| events[i].responded)
            .min()
            .unwrap_or(u64::MAX);
        for (i, event) in events.iter().enumerate() {
            if done & (1 << i) != 0 || event.invoked > bound {
                continue;
            }
            if let Some(next) = step(ph, &event.op) {
                stack.push((done | (1 << i), next));
            }
        }
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.invoked);
    let t0 = sorted.first().map_or(0, |e| e.invoked);
    let mut report = String::from("no order of these operations fits the model:\n");
    for e in sorted {
        let end = e.responded.map_or_else(
            || "   (none)".to_string(),
            |t| format!("{:>9}", (t - t0) / 1000),
        );
        report.push_str(&format!(
            "  {:>9} .. {end} µs  {:<6} {:?}\n",
            (e.invoked - t0) / 1000,
            e.client,
            e.op
        ));
    }
    Err(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, invoked: u64, responded: u64) -> Event {
        Event {
            history: 0,
            client: "t".into(),
            id: 1,
            op,
            invoked,
            responded: Some(responded),
        }
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        let ok = || Some(Ok(()));
        let h = [
            ev(Op::Launch(ok()), 0, 10),
            ev(Op::Query(Some((Ph::Working, Keeps::Nothing))), 11, 12),
            ev(Op::Finish(true), 13, 20),
            ev(Op::Query(Some((Ph::Success, Keeps::Output))), 21, 22),
        ];
        assert!(check_id(&h).is_ok());
        // A success that kept no output, or a message: not what the finish made.
        for wrong in [Keeps::Nothing, Keeps::Message] {
            let mut bad = h.clone();
            bad[3] = ev(Op::Query(Some((Ph::Success, wrong))), 21, 22);
            assert!(check_id(&bad).is_err(), "{wrong:?}");
        }
        // A query overlapping the finish may read either.
        let h2 = [
            ev(Op::Launch(ok()), 0, 10),
            ev(Op::Finish(true), 13, 20),
            ev(Op::Query(Some((Ph::Working, Keeps::Nothing))), 14, 15),
        ];
        assert!(check_id(&h2).is_ok());
        // Working read after a Success read that returned before it: stale.
        let h3 = [
            ev(Op::Launch(ok()), 0, 10),
            ev(Op::Finish(true), 13, 20),
            ev(Op::Query(Some((Ph::Success, Keeps::Output))), 14, 15),
            ev(Op::Query(Some((Ph::Working, Keeps::Nothing))), 16, 17),
        ];
        assert!(check_id(&h3).is_err());
        // Two launches accepted with no end between them.
        let h4 = [ev(Op::Launch(ok()), 0, 10), ev(Op::Launch(ok()), 1, 11)];
        assert!(check_id(&h4).is_err());
        // A launch without a reply may have happened or not.
        let mut lost = ev(Op::Launch(None), 0, 0);
        lost.responded = None;
        let h5 = [
            lost.clone(),
            ev(Op::Query(Some((Ph::NotFound, Keeps::Nothing))), 5, 6),
        ];
        assert!(check_id(&h5).is_ok());
        let h6 = [
            lost,
            ev(Op::Query(Some((Ph::Working, Keeps::Nothing))), 5, 6),
        ];
        assert!(check_id(&h6).is_ok());
        for e in [&h[0], &h[1], &h[3]] {
            assert_eq!(Event::parse(&e.to_string()), Some(e.clone()));
        }
    }
}
