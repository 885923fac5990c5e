//! Record, query, await and revoke async tasks keyed by a unique id.
//!
//! An [`AsyncTasksRecorder`] runs futures on Tokio under task ids of any
//! `Eq + Hash + Clone + Send + Sync + 'static` type (a file's md5, an order number),
//! and answers "what is the state of id X" from anywhere:
//! [`NotFound`](TaskState::NotFound), [`Working`](TaskState::Working),
//! [`Success`](TaskState::Success) or [`Failed`](TaskState::Failed). An id **succeeds
//! at most once**; a failed id may be launched again; a succeeded id can be
//! **revoked** by a compensating future (delete the uploaded file), after which it is
//! `NotFound` again. Queries are **linearizable**, and **nothing is ever stuck** in
//! `Working`: drop guards settle the record however a future ends. The recorder is a
//! cheap handle: every clone shares the same records. With the `redis` feature, the
//! [`redis`][redis-module] module's `RedisRecorder` keeps the same promises across
//! every process of a service.
//!
//! The [`guide`] has a chapter per feature, each with examples: waiting for an id,
//! task outputs, detailed status, cancellation, timeouts, retries, events, listings,
//! retention, limits, shutdown, observability, the Redis store, cancel safety.
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
//! The 2.x queries report `Revoking` as `Success`; [`status`](AsyncTasksRecorder::status)
//! and transition events show it as [`TaskPhase::Revoking`]. What every operation does
//! in every state:
//!
//! | state \ operation | `launch*`                         | `revoke_task*`                    | future ends `Ok` | future ends `Err` / panics / dropped |
//! |-------------------|-----------------------------------|-----------------------------------|------------------|--------------------------------------|
//! | NotFound          | → Working, `Ok(())`               | `NotSuccess(fut)`, unchanged      | —                | —                                    |
//! | Working           | `Err((Working, fut))`, unchanged  | `NotSuccess(fut)`, unchanged      | → Success        | → Failed                             |
//! | Success           | `Err((Success, fut))`, unchanged  | → Revoking, revoke future runs    | —                | —                                    |
//! | Revoking          | `Err((Success, fut))`, unchanged  | `Revoking(fut)`, unchanged        | revoke `Ok` → NotFound | revoke `Err`/panic/drop → Success |
//! | Failed            | → Working, `Ok(())`               | `NotSuccess(fut)`, unchanged      | —                | —                                    |
//!
//! Queries, [`status`](AsyncTasksRecorder::status), [`wait`](AsyncTasksRecorder::wait)
//! and [`subscribe`](AsyncTasksRecorder::subscribe) never change anything.
//! [`cancel`](AsyncTasksRecorder::cancel) acts only in `Working`, where it ends the
//! running future as in the last column (→ `Failed`, reason
//! [`Cancelled`](FailureReason::Cancelled)); a [timeout](LaunchOptions::timeout) does
//! the same with reason [`TimedOut`](FailureReason::TimedOut). In every other state
//! `cancel` changes nothing and returns `false`. With [retention](guide::retention)
//! configured, the recorder itself also moves finished records: a `Failed` one to
//! `NotFound`, a `Success` one to a tombstone (still `Success`) or, with
//! [`SuccessExpiry::Forget`], to `NotFound`.
//!
//! [`query_task_state`](AsyncTasksRecorder::query_task_state) returns the state;
//! [`query_task_state_quick`](AsyncTasksRecorder::query_task_state_quick) returns
//! `Success`/`Failed` when recorded so and `Working` otherwise.
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
//! # Where to read on
//!
//! - [`guide::guarantees`]: what is promised, and how the tests check it.
//! - Waiting and results: [`guide::waiting`], [`guide::outputs`] (also
//!   [`launch_kept`](AsyncTasksRecorder::launch_kept), results for every reader, and
//!   [`launch_fenced`](AsyncTasksRecorder::launch_fenced), a task's
//!   [`TaskContext`] with its fencing token and [progress](TaskContext::progress)
//!   reports), [`guide::status`], [`guide::events`].
//! - Stopping and retrying: [`guide::cancelling`], [`guide::timeouts`],
//!   [`guide::retries`].
//! - All ids in one state: [`guide::listing`].
//! - Production settings on the [`Builder`]: [`guide::configuration`],
//!   [`guide::retention`], [`guide::concurrency`], [`guide::shutdown`],
//!   [`guide::observability`] (the `tracing` and `metrics` features: every span, event
//!   and metric), [`guide::serde_and_errors`].
//! - Whole programs: [`guide::http_service`], [`guide::dashboard`], and
//!   `cargo run --example upload_service`.
//! - The Redis store: the [`redis`][redis-module] module and its
//!   [guide chapter][redis-chapter] (both with the `redis` feature).
//! - The fine print: [`guide::cancel_safety`], [`guide::async_methods`] (which methods
//!   are `async`, which need a runtime).
//!
#![cfg_attr(feature = "redis", doc = "[redis-module]: crate::redis")]
#![cfg_attr(feature = "redis", doc = "[redis-chapter]: crate::guide::redis_store")]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[redis-module]: https://docs.rs/async_tasks_recorder/3/async_tasks_recorder/redis/index.html"
)]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[redis-chapter]: https://docs.rs/async_tasks_recorder/3/async_tasks_recorder/guide/redis_store/index.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cell;
mod context;
mod core;
mod error;
mod events;
mod fault;
mod guard;
pub mod guide;
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

#[cfg(doctest)]
#[doc = include_str!("../MIGRATION.md")]
struct MigrationDoctests;
