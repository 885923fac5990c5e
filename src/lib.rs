//! Record, query and revoke async tasks keyed by a unique id.
//!
//! An [`AsyncTasksRecorder`] hosts futures under task ids of any
//! `Eq + Hash + Clone + Send + Sync + 'static` type, runs them on Tokio, and answers
//! "what is the state of id X" from anywhere: [`NotFound`](TaskState::NotFound),
//! [`Working`](TaskState::Working), [`Success`](TaskState::Success) or
//! [`Failed`](TaskState::Failed).
//!
//! - An id **succeeds at most once**; a failed id may be launched again.
//! - Queries are **linearizable**.
//! - A succeeded id can be **revoked** by a compensating future (delete the uploaded
//!   file); at most one revoke succeeds, and the id is then `NotFound` again.
//! - All ids in one state can be counted and listed at a cost that follows the number
//!   of ids in that state.
//! - **Nothing is ever stuck**: panics, dropped callers and cancelled revokes settle the
//!   record (drop guards make every final transition).
//! - **No polling**: [`wait`](AsyncTasksRecorder::wait) for any id from anywhere,
//!   receive a task's own output through a [`TaskHandle`]
//!   ([`launch_with`](AsyncTasksRecorder::launch_with)), read a detailed
//!   [`status`](AsyncTasksRecorder::status), [`cancel`](AsyncTasksRecorder::cancel) a
//!   running task, give it a [timeout](LaunchOptions::timeout), or
//!   [`subscribe`](AsyncTasksRecorder::subscribe) to every transition.
//! - **Results for every reader**: [`launch_kept`](AsyncTasksRecorder::launch_kept)
//!   keeps a task's output, or its failure's message, with the record, for `status`
//!   and `wait` from any clone (or, on Redis, any process): see [`Kept`].
//! - **Progress**: a task reports a number through its [`TaskContext::progress`]
//!   (rate-limited), which `status` and the transition stream show.
//! - **Queued is not running**: with [`max_running`](Builder::max_running), `status`
//!   and `counts` tell the tasks that wait for a slot from those that run
//!   ([`TaskStatus::queued`], [`StateCounts::queued`]), and a
//!   [run timeout](LaunchOptions::run_timeout) counts from the start of the run.
//! - **Retries**: [`launch_retrying`](AsyncTasksRecorder::launch_retrying) retries a
//!   failed attempt as a [`RetryPolicy`] says (attempts, exponential backoff with
//!   jitter, which failures), the id `Working` in between with the next attempt's
//!   number and time in `status`; a cancel stops it, and an id still succeeds at most
//!   once.
//! - **Production settings** on the [`Builder`]: forget finished records after a time or
//!   beyond a cap, keeping compact tombstones so that at-most-once still holds
//!   ([`success_ttl`](Builder::success_ttl), [`SuccessExpiry`],
//!   [`failed_ttl`](Builder::failed_ttl), [`max_finished`](Builder::max_finished)); cap
//!   the futures running at once ([`max_running`](Builder::max_running)); and shut down
//!   gracefully ([`close`](AsyncTasksRecorder::close),
//!   [`drain`](AsyncTasksRecorder::drain), [`wait_idle`](AsyncTasksRecorder::wait_idle)).
//!
//! # States and operations
//!
//! ```text
//!              launch                 future returns Ok
//!   NotFound ─────────▶ Working ─────────────────────────▶ Success ◀──┐ revoke future
//!      ▲                 │  ▲                                 │       │ Err, panic,
//!      │  future Err,    │  │ launch                   revoke │       │ dropped
//!      │  panic, drop    ▼  │                                 ▼       │
//!      │               Failed                             (Revoking) ─┘
//!      │                                                      │
//!      └──────────────── revoke future returns Ok ◀───────────┘
//! ```
//!
//! `Revoking` is reported as `Success` by the 2.x queries. What every operation does in
//! every state:
//!
//! | state \ operation | `launch*`                         | `revoke_task*`                    | future ends `Ok` | future ends `Err` / panics / dropped |
//! |-------------------|-----------------------------------|-----------------------------------|------------------|--------------------------------------|
//! | NotFound          | → Working, `Ok(())`               | `NotSuccess(fut)`, unchanged      | —                | —                                    |
//! | Working           | `Err((Working, fut))`, unchanged  | `NotSuccess(fut)`, unchanged      | → Success        | → Failed                             |
//! | Success           | `Err((Success, fut))`, unchanged  | → Revoking, revoke future runs    | —                | —                                    |
//! | Revoking          | `Err((Success, fut))`, unchanged  | `Revoking(fut)`, unchanged        | revoke `Ok` → NotFound | revoke `Err`/panic/drop → Success |
//! | Failed            | → Working, `Ok(())`               | `NotSuccess(fut)`, unchanged      | —                | —                                    |
//!
//! With retention configured ([`Builder::failed_ttl`], [`Builder::success_ttl`],
//! [`Builder::max_finished`]), the recorder itself also moves finished records: a
//! `Failed` one to `NotFound`, a `Success` one to a tombstone (still `Success`) or, with
//! [`SuccessExpiry::Forget`], to `NotFound`.
//!
//! Queries never change anything. [`query_task_state`](AsyncTasksRecorder::query_task_state)
//! returns the state; [`query_task_state_quick`](AsyncTasksRecorder::query_task_state_quick)
//! returns `Success`/`Failed` when recorded so and `Working` otherwise.
//!
//! # Example
//!
//! ```
//! use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let recorder: AsyncTasksRecorder<String> = AsyncTasksRecorder::new();
//! let md5 = "9e107d9d372bb6826bd81d3542a419d6".to_string();
//!
//! let upload = async { Ok::<_, std::io::Error>("stored") };
//! assert!(recorder.launch_block(md5.clone(), upload).await.is_ok());
//! assert_eq!(recorder.query_task_state(&md5).await, TaskState::Success);
//!
//! // Revoke: delete the file; the id is then unknown again.
//! let deleted = recorder
//!     .revoke_task_block(md5.clone(), async { Ok::<_, std::io::Error>(()) })
//!     .await;
//! assert!(deleted.is_ok());
//! assert_eq!(recorder.query_task_state(&md5).await, TaskState::NotFound);
//!
//! // Nothing to revoke now: the future comes back unstarted.
//! let again = recorder.revoke_task_block(md5.clone(), async { Ok::<(), ()>(()) }).await;
//! assert!(matches!(again, Err(RevokeFailReason::NotSuccess(_))));
//! # }
//! ```
//!
//! # Runtime
//! [`launch`](AsyncTasksRecorder::launch), [`launch_with`](AsyncTasksRecorder::launch_with)
//! and [`revoke_task`](AsyncTasksRecorder::revoke_task) spawn on the Tokio runtime they
//! are called from and panic, with a message saying so and before touching the record,
//! when there is none. The `*_block` methods and the queries need no runtime.
//!
//! # Which methods are `async`
//! One rule for both recorders: a method is `async` when, on some store, it talks to
//! the store or waits for a task. So every operation on records is `async` on both
//! (a query is a round trip on Redis), and the in-memory recorder's do all their work
//! in their first poll, never waiting, as each method's `# Cancel safety` says; code
//! written against one recorder moves to the other with the same `.await`s, and the
//! 2.x entry points keep their 2.x signatures. Methods that touch only this process's
//! state are plain functions on both: [`close`](AsyncTasksRecorder::close),
//! [`is_closed`](AsyncTasksRecorder::is_closed),
//! [`subscribe`](AsyncTasksRecorder::subscribe), and the builders' setters. Where a
//! store can fail (Redis), the `async` methods return a `Result` with [`StoreError`];
//! the in-memory recorder's cannot fail, and return plain values.
//!
//! # Observability
//!
//! Two cargo features, both off by default, report what the recorder does. Without
//! them nothing is measured or emitted: no extra field, branch or clock read.
//!
//! ```toml
//! [dependencies]
//! async_tasks_recorder = { version = "3", features = ["tracing", "metrics"] }
//! ```
//!
//! **`tracing`**: every launched future runs inside a span named `task`, and every
//! revoke future inside a span named `revoke` (level `INFO`, target
//! `async_tasks_recorder`, child of the span current at the launch or revoke), so the
//! events your future emits are children of it. The span closes when the task has
//! ended. Events, all with target `async_tasks_recorder`:
//!
//! | message               | level   | fields                                      | parent span |
//! |-----------------------|---------|---------------------------------------------|-------------|
//! | `task launched`       | `DEBUG` |                                             | `task`      |
//! | `task succeeded`      | `DEBUG` |                                             | `task`      |
//! | `task failed`         | `WARN`  | `reason` ([`FailureReason::as_str`])        | `task`      |
//! | `task launch refused` | `DEBUG` | `state` ([`TaskState::as_str`]), `closed`   | current     |
//! | `revoke started`      | `DEBUG` |                                             | `revoke`    |
//! | `revoke succeeded`    | `DEBUG` |                                             | `revoke`    |
//! | `revoke failed`       | `WARN`  |                                             | `revoke`    |
//! | `revoke refused`      | `DEBUG` | `phase` ([`TaskPhase::as_str`])             | current     |
//!
//! Ids are left out, since `K` need not be `Debug`, unless
//! [`Builder::record_ids`] is on: then the spans and the refusals carry an `id` field
//! formatted with `Debug`, and so do the events of a task whose span is disabled (a
//! `WARN`-only filter still says which task failed). A revoke fails when its future
//! returns `Err`, panics or is dropped.
//!
//! **`metrics`**: through the [`metrics`](https://docs.rs/metrics/0.24) facade
//! (0.24), with any exporter:
//!
//! | name                                          | type      | labels                                                        | unit    |
//! |-----------------------------------------------|-----------|---------------------------------------------------------------|---------|
//! | `async_tasks_recorder_ids`                    | gauge     | `state`: `working`, `success`, `failed`, `revoking`, `queued` | count   |
//! | `async_tasks_recorder_launches_total`         | counter   |                                                               | count   |
//! | `async_tasks_recorder_launches_refused_total` | counter   | `reason`: `working`, `success`, `closed`                      | count   |
//! | `async_tasks_recorder_successes_total`        | counter   |                                                               | count   |
//! | `async_tasks_recorder_failures_total`         | counter   | `reason`: `error`, `panicked`, `cancelled`, `dropped`, `timed_out`, `worker_lost` | count |
//! | `async_tasks_recorder_revokes_total`          | counter   | `outcome`: `ok`, `failed` (`Err`, panic or dropped)           | count   |
//! | `async_tasks_recorder_task_duration_seconds`  | histogram | `outcome`: `success`, `failed`                                | seconds |
//! | `async_tasks_recorder_task_queue_wait_seconds` | histogram |                                                              | seconds |
//!
//! - The gauge counts the ids in each phase. It moves with the record, under the same
//!   lock, so it always matches [`counts`](AsyncTasksRecorder::counts), except that
//!   its `success` leaves out the ids being revoked, which [`StateCounts`] counts in
//!   both, and its `queued` counts the `working` ids that wait for a
//!   [`max_running`](Builder::max_running) slot (a part of `working`, as in
//!   [`StateCounts::queued`]). Expiries move it too (a forgotten record leaves it; a tombstone stays in
//!   `success`). When the last clone of a recorder and its last running task are gone,
//!   its records are taken off it.
//! - The counters count launches accepted and refused (`success` includes an id being
//!   revoked; `closed` is a launch after [`close`](AsyncTasksRecorder::close)), tasks
//!   that ended by [`FailureReason`] or with success, and revoke futures that ended.
//! - The duration histogram has one sample per task: its run, from its start to its
//!   success or failure, on Tokio's clock. A task starts at its launch, or, when it
//!   waited for a [`max_running`](Builder::max_running) slot, when it got one; that
//!   wait is the queue-wait histogram's sample (one per task that waited). A task
//!   that ends while it waits (cancelled, timed out) records its whole time as its
//!   duration and no wait.
//! - Counters, the histogram and the events are reported just after the record
//!   changed, outside any lock, and before the id's waiters are woken or its
//!   [`TaskHandle`] resolves.
//! - Ids are never labels: one series per id would grow without bound.
//!
//! Every series is registered once, when the recorder is built, with the metrics
//! recorder installed then (the global one, or the one given to
//! `metrics::with_local_recorder` around `build`), so each later report is an atomic
//! operation on a handle. **Install your exporter before building the recorder**: one
//! built earlier reports to nothing. Recorders built under the same metrics recorder
//! share the series, and their values add up.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cell;
mod context;
mod core;
mod error;
mod events;
mod fault;
mod guard;
mod handle;
mod kept;
mod listing;
mod observe;
mod options;
mod progress;
mod recorder;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod retry;
mod runner;
mod state;
mod status;
mod store;
#[cfg(not(atr_loom))]
mod sweeper;
mod sync;

pub use context::TaskContext;
pub use error::{LaunchError, RevokeFailReason, StoreError};
pub use events::{Missed, TransitionStream};
pub use handle::{PanicPayload, TaskError, TaskHandle};
pub use kept::{Kept, KeptOutput, Shown};
pub use listing::{ListCursor, Page, ParseCursorError, StateCounts};
pub use options::{Builder, LaunchOptions, SuccessExpiry};
pub use recorder::AsyncTasksRecorder;
pub use retry::RetryPolicy;
pub use state::{ParseNameError, TaskPhase, TaskState};
pub use status::{FailureReason, Settled, TaskStatus, Transition};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
