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
//! Content-Security-Policy that forbids inline scripts and other origins. The
//! dashboard is read-only.
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

mod html;
mod live;
mod pages;
mod source;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use source::{Source, Unavailable};

/// The dashboard over one recorder, to turn into a [`Router`].
#[derive(Debug, Clone)]
pub struct Dashboard<S> {
    source: S,
    page_size: usize,
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Inner<S> {
    pub(crate) source: S,
    /// Where the router is mounted: the prefix of every link.
    pub(crate) base: String,
    pub(crate) page_size: usize,
}

impl<S: Source> Dashboard<S> {
    /// The dashboard over `source`, read-only, 50 ids a page.
    pub fn new(source: S) -> Self {
        Dashboard {
            source,
            page_size: 50,
        }
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
        });
        let at = |path: &str| format!("{base}{path}");
        let mut routes = Router::new()
            .route(&at("/"), get(pages::overview::<S>))
            .route(&at("/list"), get(pages::list::<S>))
            .route(&at("/task"), get(pages::task::<S>))
            .route(&at("/events"), get(live::events::<S>))
            .route(&at("/assets/app.js"), get(script))
            .route(&at("/assets/app.css"), get(stylesheet));
        if !base.is_empty() {
            // The prefix without its slash leads to the overview.
            let home = at("/");
            routes = routes.route(&base, get(move || redirect_home(home)));
        }
        routes.with_state(inner)
    }
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
