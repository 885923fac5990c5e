//! The state machine: the public [`TaskState`], the internal [`Phase`] and the one
//! function, [`next`], that says which moves are allowed.
//!
//! Every store calls [`next`] before it changes a record, so the rules live here and
//! nowhere else.

use std::fmt;

/// The state of a task id, as the 2.x queries report it.
///
/// ```text
///              launch                 future returns Ok
///   NotFound ─────────▶ Working ─────────────────────────▶ Success
///      ▲                 │  ▲                                 │
///      │  future Err,    │  │ launch                          │
///      │  panic, drop    ▼  │                                 │
///      │               Failed                                 │
///      │                                                      │
///      └──────────────── revoke future returns Ok ◀───────────┘
/// ```
///
/// While a revoke future runs, the id still reads [`Success`](TaskState::Success).
///
/// # Examples
///
/// ```
/// use async_tasks_recorder::TaskState;
///
/// assert!(TaskState::Success.is_final());
/// assert!(!TaskState::Working.is_final());
/// assert_eq!(TaskState::Failed.to_string(), "failed");
/// assert_eq!(format!("{:>8}", TaskState::Failed), "  failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TaskState {
    /// A future for this id is running, or has been spawned and waits for a worker
    /// ("running or pending", as in 2.x).
    Working,
    /// A future for this id returned `Ok`. No future of this id will run again until a
    /// revoke of it succeeds.
    Success,
    /// The last future of this id returned `Err`, panicked, or was dropped before it
    /// finished. The id may be launched again.
    Failed,
    /// The recorder holds nothing for this id: it was never launched, or its success was
    /// revoked.
    NotFound,
}

impl TaskState {
    /// Every state, in a fixed order (handy for dashboards and tests).
    pub const ALL: [TaskState; 4] = [
        TaskState::Working,
        TaskState::Success,
        TaskState::Failed,
        TaskState::NotFound,
    ];

    /// `true` for the states in which nothing is running for the id:
    /// `Success`, `Failed` and `NotFound`.
    #[must_use]
    pub const fn is_final(self) -> bool {
        !matches!(self, TaskState::Working)
    }

    /// The lower-case name used by `Display`: `working`, `success`, `failed`,
    /// `not_found`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Working => "working",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::NotFound => "not_found",
        }
    }
}

impl TaskState {
    /// The phases that make up this state (`Success` includes `Revoking`).
    pub(crate) const fn phases(self) -> &'static [TaskPhase] {
        match self {
            TaskState::Working => &[TaskPhase::Working],
            TaskState::Success => &[TaskPhase::Success, TaskPhase::Revoking],
            TaskState::Failed => &[TaskPhase::Failed],
            TaskState::NotFound => &[],
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Parses the names [`as_str`](TaskState::as_str) gives (`working`, `success`,
/// `failed`, `not_found`), so that a query such as `?state=failed` parses in one line:
///
/// ```
/// use async_tasks_recorder::TaskState;
///
/// assert_eq!("failed".parse::<TaskState>(), Ok(TaskState::Failed));
/// assert!("gone".parse::<TaskState>().is_err());
/// ```
impl std::str::FromStr for TaskState {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                ParseNameError::new("task state", s, &TaskState::ALL.map(TaskState::as_str))
            })
    }
}

/// A name that is not one of a type's names, from `FromStr` of [`TaskState`],
/// [`TaskPhase`] or [`FailureReason`](crate::FailureReason). Its `Display` says what
/// was given and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNameError {
    what: &'static str,
    given: String,
    expected: String,
}

impl ParseNameError {
    pub(crate) fn new(what: &'static str, given: &str, names: &[&str]) -> ParseNameError {
        // A long input is shown shortened: it may come from a request.
        let given: String = given.chars().take(40).collect();
        ParseNameError {
            what,
            given,
            expected: names.join(", "),
        }
    }
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}: expected one of {}",
            self.what, self.given, self.expected
        )
    }
}

impl std::error::Error for ParseNameError {}

/// The detailed state of an id: the four [`TaskState`]s plus `Revoking`, a `Success`
/// whose revoke future is running (the 2.x queries report it as `Success`).
///
/// Returned by [`status`](crate::AsyncTasksRecorder::status) and carried by
/// [`Transition`](crate::Transition) events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TaskPhase {
    /// No record: never launched, or revoked.
    NotFound,
    /// A future of this id is running or waiting to run.
    Working,
    /// The id succeeded.
    Success,
    /// The last attempt failed; see [`FailureReason`](crate::FailureReason).
    Failed,
    /// The id succeeded and a revoke future for it is running.
    Revoking,
}

impl TaskPhase {
    /// `true` when nothing runs for the id (`NotFound`, `Success`, `Failed`).
    #[must_use]
    pub const fn is_final(self) -> bool {
        !matches!(self, TaskPhase::Working | TaskPhase::Revoking)
    }

    /// The lower-case name used by `Display`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskPhase::NotFound => "not_found",
            TaskPhase::Working => "working",
            TaskPhase::Success => "success",
            TaskPhase::Failed => "failed",
            TaskPhase::Revoking => "revoking",
        }
    }

    /// The 2.x view of a phase: `Revoking` reads `Success`.
    #[must_use]
    pub const fn state(self) -> TaskState {
        match self {
            TaskPhase::NotFound => TaskState::NotFound,
            TaskPhase::Working => TaskState::Working,
            TaskPhase::Success | TaskPhase::Revoking => TaskState::Success,
            TaskPhase::Failed => TaskState::Failed,
        }
    }
}

impl fmt::Display for TaskPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Parses the names [`as_str`](TaskPhase::as_str) gives (`revoking` included).
impl std::str::FromStr for TaskPhase {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskPhase::from_name(s).ok_or_else(|| {
            ParseNameError::new("task phase", s, &TaskPhase::ALL.map(TaskPhase::as_str))
        })
    }
}

/// Internal short name.
pub(crate) type Phase = TaskPhase;

/// Why a launch was refused: the id's phase at that instant, and `closed` when only
/// the recorder being closed kept an id that could otherwise launch from launching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) phase: Phase,
    pub(crate) closed: bool,
}

/// What a caller asks of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Start a future for the id.
    Launch,
    /// The running future ended: `true` if it returned `Ok`.
    Finish { ok: bool },
    /// Start a revoke future for the id.
    RevokeBegin,
    /// The revoke future ended: `true` if it returned `Ok`.
    RevokeEnd { ok: bool },
    /// Retention forgets a finished record (its TTL passed, or the cap on finished
    /// records evicted it). Shrinking a `Success` record to a tombstone is not a
    /// transition: the phase stays `Success`.
    Forget,
    /// The lease of a running phase ran out before its holder ended it (a store shared
    /// by several processes: the holder died, paused or lost its connection). A
    /// `Working` id becomes `Failed` with [`FailureReason::WorkerLost`]; a `Revoking`
    /// one is `Success` again, as after a failed revoke.
    ///
    /// [`FailureReason::WorkerLost`]: crate::FailureReason::WorkerLost
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Expire,
}

// Used by the Redis scripts' generated table, and by the tests.
#[cfg_attr(not(any(test, feature = "redis")), allow(dead_code))]
impl Op {
    /// Every operation, in a fixed order (for the tables generated from [`next`]).
    pub(crate) const ALL: [Op; 8] = [
        Op::Launch,
        Op::Finish { ok: true },
        Op::Finish { ok: false },
        Op::RevokeBegin,
        Op::RevokeEnd { ok: true },
        Op::RevokeEnd { ok: false },
        Op::Forget,
        Op::Expire,
    ];

    /// The operation's name in the generated tables (the Redis scripts use these).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Op::Launch => "launch",
            Op::Finish { ok: true } => "finish_ok",
            Op::Finish { ok: false } => "finish_err",
            Op::RevokeBegin => "revoke_begin",
            Op::RevokeEnd { ok: true } => "revoke_ok",
            Op::RevokeEnd { ok: false } => "revoke_err",
            Op::Forget => "forget",
            Op::Expire => "expire",
        }
    }
}

impl TaskPhase {
    /// Every phase, in a fixed order (handy for dashboards and tests).
    pub const ALL: [Phase; 5] = [
        Phase::NotFound,
        Phase::Working,
        Phase::Success,
        Phase::Failed,
        Phase::Revoking,
    ];

    /// The phase named by [`as_str`](Self::as_str).
    pub(crate) fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// The state machine. Returns the phase the record moves to, or `Err(current)` when
/// the operation is refused in the current phase (the record is then left untouched).
///
/// `Finish` and `RevokeEnd` are issued only by the guard that owns the running future,
/// so a refusal of those means a broken invariant; stores treat it as a bug.
pub(crate) const fn next(current: Phase, op: Op) -> Result<Phase, Phase> {
    match (current, op) {
        (Phase::NotFound | Phase::Failed, Op::Launch) => Ok(Phase::Working),
        (Phase::Working, Op::Finish { ok: true }) => Ok(Phase::Success),
        (Phase::Working, Op::Finish { ok: false }) => Ok(Phase::Failed),
        (Phase::Success, Op::RevokeBegin) => Ok(Phase::Revoking),
        (Phase::Revoking, Op::RevokeEnd { ok: true }) => Ok(Phase::NotFound),
        (Phase::Revoking, Op::RevokeEnd { ok: false }) => Ok(Phase::Success),
        (Phase::Success | Phase::Failed, Op::Forget) => Ok(Phase::NotFound),
        (Phase::Working, Op::Expire) => Ok(Phase::Failed),
        (Phase::Revoking, Op::Expire) => Ok(Phase::Success),
        (current, _) => Err(current),
    }
}

/// The state machine as a Lua table, `NEXT[phase][op] = phase`, with only the allowed
/// moves present: the Redis scripts look every move up in it, so that [`next`] stays
/// the one place that says what is allowed.
#[cfg(any(test, feature = "redis"))]
pub(crate) fn lua_table() -> String {
    let mut out = String::from("local NEXT = {\n");
    for from in Phase::ALL {
        out.push_str("  ");
        out.push_str(from.as_str());
        out.push_str(" = {");
        for op in Op::ALL {
            if let Ok(to) = next(from, op) {
                out.push_str(&format!(" {} = \"{}\",", op.as_str(), to.as_str()));
            }
        }
        out.push_str(" },\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [Phase; 5] = [
        Phase::NotFound,
        Phase::Working,
        Phase::Success,
        Phase::Failed,
        Phase::Revoking,
    ];
    const OPS: [Op; 8] = Op::ALL;

    /// The table from the crate docs, cell by cell: `None` means refused.
    fn expected(p: Phase, op: Op) -> Option<Phase> {
        use TaskPhase::*;
        match (p, op) {
            (NotFound, Op::Launch) => Some(Working),
            (Failed, Op::Launch) => Some(Working),
            (Working, Op::Finish { ok }) => Some(if ok { Success } else { Failed }),
            (Success, Op::RevokeBegin) => Some(Revoking),
            (Revoking, Op::RevokeEnd { ok }) => Some(if ok { NotFound } else { Success }),
            (Success | Failed, Op::Forget) => Some(NotFound),
            (Working, Op::Expire) => Some(Failed),
            (Revoking, Op::Expire) => Some(Success),
            _ => None,
        }
    }

    #[test]
    fn every_cell_of_the_table() {
        let mut allowed = 0;
        for p in PHASES {
            for op in OPS {
                match (next(p, op), expected(p, op)) {
                    (Ok(n), Some(e)) => {
                        assert_eq!(n, e, "{p:?} + {op:?}");
                        allowed += 1;
                    }
                    (Err(cur), None) => assert_eq!(cur, p, "refusal reports the phase"),
                    (got, want) => panic!("{p:?} + {op:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(allowed, 11);
    }

    #[test]
    fn lua_table_lists_exactly_the_allowed_moves() {
        let lua = lua_table();
        for p in PHASES {
            for op in OPS {
                let cell = format!(" {} = \"", op.as_str());
                let line = lua
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{} = {{", p.as_str())))
                    .expect("one line per phase");
                match next(p, op) {
                    Ok(to) => assert!(line.contains(&format!("{cell}{}\"", to.as_str()))),
                    Err(_) => assert!(!line.contains(&cell), "{line}"),
                }
            }
        }
        assert_eq!(Phase::from_name("revoking"), Some(Phase::Revoking));
        assert_eq!(Phase::from_name("gone"), None);
    }

    #[test]
    fn public_view() {
        assert_eq!(Phase::Revoking.state(), TaskState::Success);
        assert_eq!(Phase::NotFound.state(), TaskState::NotFound);
        assert!(!Phase::Revoking.is_final());
        assert_eq!(format!("{:<9}|", Phase::Revoking), "revoking |");
        for s in TaskState::ALL {
            assert_eq!(s.is_final(), s != TaskState::Working);
        }
    }
}
