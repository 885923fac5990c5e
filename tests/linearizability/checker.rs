//! The checker: Wing & Gong's search with Lowe's memoization for an order of a
//! history's operations that respects real time and that the specification accepts,
//! and a readable report of a history that has none.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use crate::history::{Answer, Call, Event};
use crate::spec::{apply, state_key, Spec, StateKey};

/// An operation as the checker sees it: times relative to the first invocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    client: usize,
    call: Call,
    invoked: Duration,
    /// `None` for a pending operation: it may take effect at any time after its
    /// invocation, or not at all, and its answer is unknown.
    returned: Option<Duration>,
    answer: Option<Answer>,
}

/// The search state.
struct Search<'a> {
    /// Sorted by invocation.
    ops: &'a [Op],
    /// Bit `i` set: `ops[i]` is linearized.
    done: Vec<u64>,
    /// Completed operations not linearized yet; the search succeeds when it is 0.
    left: usize,
    /// The order being built.
    order: Vec<usize>,
    /// Configurations (linearized set, model state) already explored without success.
    memo: HashSet<(Vec<u64>, StateKey)>,
    /// The longest linearizable prefix seen, and the model after it (for the report).
    deepest: (Vec<usize>, Spec),
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    /// The earliest response among the completed operations not linearized yet: an
    /// operation invoked after it cannot come next.
    fn horizon(&self) -> Duration {
        (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .filter_map(|i| self.ops[i].returned)
            .min()
            .unwrap_or(Duration::MAX)
    }

    fn dfs(&mut self, spec: &Spec) -> bool {
        if self.left == 0 {
            return true;
        }
        if !self.memo.insert((self.done.clone(), state_key(spec))) {
            return false;
        }
        if self.order.len() > self.deepest.0.len() {
            self.deepest = (self.order.clone(), spec.clone());
        }
        let horizon = self.horizon();
        for i in 0..self.ops.len() {
            let op = self.ops[i];
            // Sorted by invocation: nothing further can be minimal either. Equal
            // instants count as concurrent.
            if op.invoked > horizon {
                break;
            }
            if self.is_done(i) {
                continue;
            }
            let mut next = spec.clone();
            let Some(answer) = apply(&mut next, op.call) else {
                continue;
            };
            if op.answer.is_some_and(|observed| observed != answer) {
                continue;
            }
            let completed = usize::from(op.returned.is_some());
            self.flip(i);
            self.order.push(i);
            self.left -= completed;
            if self.dfs(&next) {
                return true;
            }
            self.left += completed;
            self.order.pop();
            self.flip(i);
        }
        false
    }
}

/// What a successful check explored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    /// Configurations (set of linearized operations, model state) visited.
    pub(crate) configurations: usize,
}

/// Checks that `history` is linearizable with respect to the model, starting from an
/// empty recorder. On failure, returns a report of the history.
pub(crate) fn check(history: &[Event]) -> Result<Checked, String> {
    check_on(history, false)
}

/// [`check`] of a history whose recorder has a `max_running` limit if `may_queue`.
pub(crate) fn check_on(history: &[Event], may_queue: bool) -> Result<Checked, String> {
    let start = Spec {
        may_queue,
        ..Spec::default()
    };
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| e.invoked);
    let Some(origin) = events.first().map(|e| e.invoked) else {
        return Ok(Checked { configurations: 0 });
    };
    let ops: Vec<Op> = events
        .iter()
        .map(|e| Op {
            client: e.client,
            call: e.call,
            invoked: e.invoked.duration_since(origin),
            returned: e.response.map(|(at, _)| at.duration_since(origin)),
            answer: e.response.map(|(_, answer)| answer),
        })
        .collect();
    let mut search = Search {
        ops: &ops,
        done: vec![0; ops.len().div_ceil(64)],
        left: ops.iter().filter(|op| op.returned.is_some()).count(),
        order: Vec::new(),
        memo: HashSet::new(),
        deepest: (Vec::new(), start.clone()),
    };
    if search.dfs(&start) {
        Ok(Checked {
            configurations: search.memo.len(),
        })
    } else {
        Err(report(&ops, &search.deepest.0, &search.deepest.1))
    }
}

/// A readable account of a history that is not linearizable: every operation in order
/// of invocation, the longest prefix that could be linearized, and why none of the
/// operations that could come after it fits.
pub(crate) fn report(ops: &[Op], prefix: &[usize], spec: &Spec) -> String {
    use fmt::Write as _;

    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "history is NOT linearizable: no order of its {} operations respects real time \
         and the sequential model.",
        ops.len()
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>6}  {:>11}  {:>11}  {:<26}  answer",
        "#", "client", "invoked µs", "returned µs", "operation"
    );
    for (i, op) in ops.iter().enumerate() {
        let returned = op
            .returned
            .map_or_else(|| "pending".to_string(), |d| format!("{:.1}", micros(d)));
        let answer = op.answer.map_or_else(|| "?".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "{i:>4}  {:>6}  {:>11.1}  {returned:>11}  {:<26}  {answer}",
            format!("c{}", op.client),
            micros(op.invoked),
            op.call,
        );
    }
    let order: Vec<String> = prefix.iter().map(|i| format!("#{i}")).collect();
    let _ = writeln!(
        out,
        "longest linearizable prefix ({} of {}): {}",
        prefix.len(),
        ops.len(),
        order.join(" ")
    );
    let _ = writeln!(out, "model state after it: {:?}", state_key(spec));
    let mut done = vec![false; ops.len()];
    for &i in prefix {
        done[i] = true;
    }
    let horizon = (0..ops.len())
        .filter(|&i| !done[i])
        .filter_map(|i| ops[i].returned)
        .min()
        .unwrap_or(Duration::MAX);
    let _ = writeln!(out, "none of the operations that may come next fits:");
    for (i, op) in ops.iter().enumerate() {
        if done[i] || op.invoked > horizon {
            continue;
        }
        let mut next = spec.clone();
        let why = match apply(&mut next, op.call) {
            None => "cannot happen in this state".to_string(),
            Some(expected) => match op.answer {
                Some(observed) if observed != expected => {
                    format!("answered {observed}, the model says {expected}")
                }
                // It fits here, but nothing fits after it.
                _ => "fits here, but every continuation fails".to_string(),
            },
        };
        let _ = writeln!(out, "  #{i} {}: {why}", op.call);
    }
    out
}
