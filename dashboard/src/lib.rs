//! An operator's dashboard for [`async_tasks_recorder`]: every task by state, live,
//! in the browser, as an [`axum::Router`] that the application mounts under a prefix
//! of its choice.
//!
//! - **Overview**: the counts per state (queued and revoking included), kept current
//!   by server-sent events, and a chart of transitions per second over the last five
//!   minutes.
//! - **A list per state** (`Working`, `Success`, `Failed`), a page at a time through
//!   the recorder's paged listing, with a search by exact id. The order is the
//!   store's (neither store keeps ids by time).
//! - **A task's page**: its phase, attempts, failure reason and message, kept
//!   result, progress, when the phase began and when a retry is due, and its
//!   transitions as they happen.
//!
//! The pages are rendered on the server; the dashboard's own small script and
//! stylesheet are served by the router (nothing is fetched from elsewhere, and there
//! is no build step). Every id, message and kept value is escaped wherever it is
//! shown and percent-encoded wherever it is put into a URL, and every page carries a
//! Content-Security-Policy that forbids inline scripts and other origins.
//!
//! The dashboard is read-only unless the application gives an authorisation hook
//! ([`Dashboard::authorize`]) and what an action needs: then the task page offers
//! [cancel](Dashboard::cancel) for a running task, [retry](Dashboard::retry) for a
//! failed one (the application's function rebuilds the task's future from its id)
//! and [revoke](Dashboard::revoke) for a succeeded one (likewise, a compensating
//! future). Actions are POSTs with a CSRF token, and answer `403` to a request the
//! hook refuses.
//!
//! Works over [`AsyncTasksRecorder`](async_tasks_recorder::AsyncTasksRecorder) and,
//! with the `redis` feature, `RedisRecorder`: see [`Source`]. Ids travel in URLs as
//! their `Display` and come back through `FromStr`.
//!
//! ```no_run
//! use async_tasks_recorder::AsyncTasksRecorder;
//! use async_tasks_recorder_dashboard::Dashboard;
//!
//! # async fn run() -> std::io::Result<()> {
//! let recorder: AsyncTasksRecorder<String> = AsyncTasksRecorder::new();
//! let app = axum::Router::new()
//!     // ... the application's own routes ...
//!     .merge(Dashboard::new(recorder.clone()).router("/admin/tasks"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod actions;
mod html;
mod live;
mod pages;
mod source;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use source::{BoxTask, Refused, Source, Unavailable};

/// The dashboard over one recorder, to turn into a [`Router`].
pub struct Dashboard<S: Source> {
    source: S,
    page_size: usize,
    actions: actions::Actions<S::Id>,
}

impl<S: Source + fmt::Debug> fmt::Debug for Dashboard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("source", &self.source)
            .field("page_size", &self.page_size)
            .field("actions", &self.actions)
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct Inner<S: Source> {
    pub(crate) source: S,
    /// Where the router is mounted: the prefix of every link.
    pub(crate) base: String,
    pub(crate) page_size: usize,
    pub(crate) actions: actions::Actions<S::Id>,
    /// The token every action's form carries.
    pub(crate) csrf: String,
}

impl<S: Source> Dashboard<S> {
    /// The dashboard over `source`, read-only, 50 ids a page.
    pub fn new(source: S) -> Self {
        Dashboard {
            source,
            page_size: 50,
            actions: actions::Actions::none(),
        }
    }

    /// Allows the actions given with [`cancel`](Self::cancel), [`retry`](Self::retry)
    /// and [`revoke`](Self::revoke), for the requests `hook` accepts. The hook sees
    /// the request's headers: check a bearer token, a session cookie, or what a
    /// proxy in front of the application sets. A task's page offers an action (and
    /// the CSRF token its form carries) only to a viewer the hook accepts. Without a
    /// hook, every action answers `403` and the pages offer none.
    #[must_use]
    pub fn authorize(mut self, hook: impl Fn(&HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        self.actions.authorize = Some(Arc::new(hook));
        self
    }

    /// Offers to cancel a running task.
    #[must_use]
    pub fn cancel(mut self) -> Self {
        self.actions.cancel = true;
        self
    }

    /// Offers to retry a failed task (or launch an unknown id again): `rebuild`
    /// makes the task's future from its id, and it is launched as a new attempt
    /// whose error message is kept with the record.
    #[must_use]
    pub fn retry<F, Fut, E>(mut self, rebuild: F) -> Self
    where
        F: Fn(&S::Id) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        self.actions.retry = Some(Arc::new(move |id: &S::Id| boxed(rebuild(id))));
        self
    }

    /// Offers to revoke a succeeded task: `compensate` makes the compensating
    /// future from its id (delete the uploaded file, say). The request waits for it.
    #[must_use]
    pub fn revoke<F, Fut, E>(mut self, compensate: F) -> Self
    where
        F: Fn(&S::Id) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        self.actions.revoke = Some(Arc::new(move |id: &S::Id| boxed(compensate(id))));
        self
    }

    /// How many ids a list page shows (at least 1; default 50).
    #[must_use]
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// The router, with every route under `prefix` (such as `/admin/tasks`; `""` or
    /// `/` for the root), to [`merge`](Router::merge) into the application's:
    ///
    /// - `{prefix}/`: the overview;
    /// - `{prefix}/list?state=failed[&after=…][&q=…]`: a list;
    /// - `{prefix}/task?id=…`: a task's page;
    /// - `{prefix}/events[?id=…]`: the live stream;
    /// - `POST {prefix}/task/cancel`, `…/retry`, `…/revoke`: the actions;
    /// - `{prefix}/assets/app.js`, `{prefix}/assets/app.css`.
    ///
    /// # Panics
    /// If `prefix` is not empty and does not start with `/`, or ends with `/` (other
    /// than `/` itself).
    pub fn router(self, prefix: &str) -> Router {
        let base = match prefix {
            "" | "/" => String::new(),
            p => {
                assert!(
                    p.starts_with('/') && !p.ends_with('/'),
                    "the dashboard's prefix must start with '/' and not end with one: {p:?}"
                );
                p.to_string()
            }
        };
        let inner = Arc::new(Inner {
            source: self.source,
            base: base.clone(),
            page_size: self.page_size,
            actions: self.actions,
            csrf: actions::csrf_token(),
        });
        let at = |path: &str| format!("{base}{path}");
        let mut routes = Router::new()
            .route(&at("/"), get(pages::overview::<S>))
            .route(&at("/list"), get(pages::list::<S>))
            .route(&at("/task"), get(pages::task::<S>))
            .route(&at("/events"), get(live::events::<S>))
            .route(&at("/assets/app.js"), get(script))
            .route(&at("/assets/app.css"), get(stylesheet))
            .route(&at("/task/{action}"), post(actions::act::<S>));
        if !base.is_empty() {
            // The prefix without its slash leads to the overview.
            let home = at("/");
            routes = routes.route(&base, get(move || redirect_home(home)));
        }
        routes.with_state(inner)
    }
}

/// A task future with its error as text.
fn boxed<Fut, E>(task: Fut) -> BoxTask
where
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    Box::pin(async move { task.await.map_err(|e| e.to_string()) })
}

async fn redirect_home(to: String) -> impl IntoResponse {
    axum::response::Redirect::permanent(&to)
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", include_str!("../assets/app.css"))
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
}
