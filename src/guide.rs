//! The guide: one chapter per feature, each with examples that run as tests.
//!
//! The [crate root](crate) has the states, the table of what each operation does in
//! each state, and a first example; these chapters take one feature each. Every
//! method works the same from any clone of a recorder, and [`wait`], [`status`],
//! [`cancel`] and [`subscribe`] cover ids started by every launch method.
//!
//! | you want | use | chapter |
//! |----------|-----|---------|
//! | what is promised, and how it is checked | | [`guarantees`] |
//! | settings other than the defaults | [`AsyncTasksRecorder::builder`](crate::AsyncTasksRecorder::builder) … [`build`](crate::Builder::build) | [`configuration`] |
//! | to sleep until an id settles, instead of polling | [`wait`] → [`Settled`](crate::Settled) | [`waiting`] |
//! | the task's own output (or why there is none) | [`launch_with`] → [`TaskHandle`](crate::TaskHandle) | [`outputs`] |
//! | attempts and the reason of the last failure | [`status`] → [`TaskStatus`](crate::TaskStatus) | [`status`](self::status) |
//! | to stop a running task | [`cancel`] | [`cancelling`] |
//! | to stop a task that takes too long | [`LaunchOptions::timeout`](crate::LaunchOptions::timeout) | [`timeouts`] |
//! | to retry a failed attempt | [`launch_retrying`](crate::AsyncTasksRecorder::launch_retrying) with a [`RetryPolicy`](crate::RetryPolicy) | [`retries`] |
//! | every transition of every id, as it happens | [`subscribe`] → [`TransitionStream`](crate::TransitionStream) | [`events`] |
//! | to count, list or page through the ids in one state | [`counts`](crate::AsyncTasksRecorder::counts), [`list_page`](crate::AsyncTasksRecorder::list_page) | [`listing`] |
//! | a recorder that does not grow without bound | TTLs, tombstones, a cap | [`retention`] |
//! | at most `n` tasks running at once | [`Builder::max_running`](crate::Builder::max_running) | [`concurrency`] |
//! | to stop cleanly | [`close`](crate::AsyncTasksRecorder::close), [`drain`](crate::AsyncTasksRecorder::drain) | [`shutdown`] |
//! | spans, events and metrics | the `tracing` and `metrics` features | [`observability`] |
//! | JSON, and errors that work with `?` | the `serde` feature | [`serde_and_errors`] |
//! | a whole HTTP service to read | `cargo run -p http-service` | [`http_service`] |
//! | every task in a browser | the `async_tasks_recorder_dashboard` crate | [`dashboard`] |
//! | records shared by every replica of a service | the `redis` feature | [`redis_store`][redis-chapter] (with the feature) |
//! | what a dropped future leaves behind | | [`cancel_safety`] |
//! | why a method is `async` or not, and which need a runtime | | [`async_methods`] |
//!
//! The main demonstration, `cargo run --example upload_service`, is an upload service
//! keyed by md5, printed as a transcript of requests and replies: long polls that wait
//! for an upload, a client that holds its connection for the upload's result, a stuck
//! upload cancelled by an operator, one that times out, and an audit log fed by
//! [`subscribe`]. With the `redis` feature and `ATR_REDIS_URL` set, it runs on Redis
//! with the same transcript.
//!
//! [`wait`]: crate::AsyncTasksRecorder::wait
//! [`status`]: crate::AsyncTasksRecorder::status
//! [`cancel`]: crate::AsyncTasksRecorder::cancel
//! [`subscribe`]: crate::AsyncTasksRecorder::subscribe
//! [`launch_with`]: crate::AsyncTasksRecorder::launch_with
//!
#![cfg_attr(feature = "redis", doc = "[redis-chapter]: self::redis_store")]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[redis-chapter]: https://docs.rs/async_tasks_recorder/3/async_tasks_recorder/guide/redis_store/index.html"
)]

#[doc = include_str!("guide/guarantees.md")]
pub mod guarantees {}

#[doc = include_str!("guide/configuration.md")]
pub mod configuration {}

#[doc = include_str!("guide/waiting.md")]
pub mod waiting {}

#[doc = include_str!("guide/outputs.md")]
pub mod outputs {}

#[doc = include_str!("guide/status.md")]
pub mod status {}

#[doc = include_str!("guide/cancelling.md")]
pub mod cancelling {}

#[doc = include_str!("guide/timeouts.md")]
pub mod timeouts {}

#[doc = include_str!("guide/retries.md")]
pub mod retries {}

#[doc = include_str!("guide/events.md")]
pub mod events {}

#[doc = include_str!("guide/listing.md")]
pub mod listing {}

#[doc = include_str!("guide/retention.md")]
pub mod retention {}

#[doc = include_str!("guide/concurrency.md")]
pub mod concurrency {}

#[doc = include_str!("guide/shutdown.md")]
pub mod shutdown {}

#[doc = include_str!("guide/observability.md")]
pub mod observability {}

#[doc = include_str!("guide/serde_and_errors.md")]
pub mod serde_and_errors {}

#[doc = include_str!("guide/http_service.md")]
pub mod http_service {}

#[doc = include_str!("guide/dashboard.md")]
pub mod dashboard {}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc = include_str!("guide/redis_store.md")]
pub mod redis_store {}

#[doc = include_str!("guide/cancel_safety.md")]
pub mod cancel_safety {}

#[doc = include_str!("guide/async_methods.md")]
pub mod async_methods {}
