//! The pages: the overview, a list per state, a task's page.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use async_tasks_recorder::{ListCursor, StateCounts, TaskPhase, TaskState, TaskStatus};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::actions::Action;
use crate::html::{self, text, url_part};
use crate::source::{Source, Unavailable};
use crate::Inner;

/// The states that have a list: their query name and their label.
pub(crate) const LISTED: [(&str, &str); 3] = [
    ("working", "Working"),
    ("success", "Success"),
    ("failed", "Failed"),
];

/// A page with the dashboard's headers: HTML, the Content-Security-Policy, no
/// sniffing, no referrer (ids travel in URLs).
pub(crate) fn respond(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A page that only says what went wrong.
pub(crate) fn problem(base: &str, status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(r#"<p class="problem">{}</p>"#, text(detail));
    respond(status, html::page(base, title, &body))
}

fn unavailable(base: &str, e: &Unavailable) -> Response {
    problem(
        base,
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        &e.to_string(),
    )
}

/// The overview: counts per state, kept live by the script, and the chart of
/// transitions per second it draws.
pub(crate) async fn overview<S: Source>(State(inner): State<Arc<Inner<S>>>) -> Response {
    let base = &inner.base;
    let counts = match inner.source.counts().await {
        Ok(counts) => counts,
        Err(e) => return unavailable(base, &e),
    };
    respond(
        StatusCode::OK,
        html::page(base, "Overview", &overview_body(base, &counts)),
    )
}

fn overview_body(base: &str, c: &StateCounts) -> String {
    let base = text(base);
    let rows = [
        ("working", "Working", c.working, true),
        ("queued", "of which queued", c.queued, false),
        ("success", "Success", c.success, true),
        ("revoking", "of which revoking", c.revoking, false),
        ("failed", "Failed", c.failed, true),
    ];
    let mut body = String::from(r#"<table id="counts"><tbody>"#);
    for (name, label, n, listed) in rows {
        let label = if listed {
            format!(r#"<a href="{base}/list?state={name}">{label}</a>"#)
        } else {
            label.to_string()
        };
        let _ = write!(
            body,
            r#"<tr><th>{label}</th><td id="count-{name}">{n}</td></tr>"#
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(
        r#"<h2>Transitions per second</h2>
<canvas id="rate" width="600" height="120" aria-label="transitions per second over the last five minutes"></canvas>
<p id="live" class="live">connecting…</p>"#,
    );
    body
}

/// The query of a list.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    after: Option<String>,
    q: Option<String>,
}

/// The ids in one state, a page at a time (in the store's order: neither store
/// keeps one by time), with a search by exact id.
pub(crate) async fn list<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let base = &inner.base;
    let name = query.state.as_deref().unwrap_or("failed");
    let state = match TaskState::from_str(name) {
        Ok(state) if state != TaskState::NotFound => state,
        _ => {
            let detail = format!("no list of the state {name:?}: use working, success or failed");
            return problem(base, StatusCode::BAD_REQUEST, "No such list", &detail);
        }
    };
    let title = LISTED
        .iter()
        .find(|(listed, _)| *listed == state.as_str())
        .map_or("Tasks", |(_, label)| label)
        .to_string();
    let e = text(base);
    let mut body = format!(
        r#"<form class="search" method="get" action="{e}/list"><input type="hidden" name="state" value="{name}"><input type="search" name="q" placeholder="id" value="{q}"><button type="submit">Find</button></form>"#,
        name = text(name),
        q = text(query.q.as_deref().unwrap_or("")),
    );
    if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
        let Ok(id) = S::Id::from_str(q) else {
            let _ = write!(body, r#"<p class="problem">{} is not an id.</p>"#, text(q));
            return respond(StatusCode::BAD_REQUEST, html::page(base, &title, &body));
        };
        let status = match inner.source.status(&id).await {
            Ok(status) => status,
            Err(e) => return unavailable(base, &e),
        };
        body.push_str(r#"<table class="ids"><tbody>"#);
        id_row(&mut body, base, &id.to_string(), Some(status.phase));
        body.push_str("</tbody></table>");
        return respond(StatusCode::OK, html::page(base, &title, &body));
    }
    let after = match query.after.as_deref().map(ListCursor::from_str) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(e)) => {
            return problem(base, StatusCode::BAD_REQUEST, "Bad cursor", &e.to_string());
        }
    };
    let page = match inner.source.page(state, after, inner.page_size).await {
        Ok(page) => page,
        Err(e) => return unavailable(base, &e),
    };
    if page.ids.is_empty() {
        body.push_str(r#"<p class="empty">No ids on this page.</p>"#);
    } else {
        body.push_str(r#"<table class="ids"><tbody>"#);
        for id in &page.ids {
            id_row(&mut body, base, &id.to_string(), None);
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = page.next {
        let _ = write!(
            body,
            r#"<p><a id="next" href="{e}/list?state={name}&amp;after={next}">Next page</a></p>"#,
            name = url_part(name),
            next = url_part(&next.to_string()),
        );
    }
    respond(StatusCode::OK, html::page(base, &title, &body))
}

/// One id of a list, linked to its page.
fn id_row(body: &mut String, base: &str, id: &str, phase: Option<TaskPhase>) {
    let _ = write!(
        body,
        r#"<tr><td><a class="id" href="{}/task?id={}">{}</a></td>"#,
        text(base),
        url_part(id),
        text(id)
    );
    if let Some(phase) = phase {
        let _ = write!(body, "<td>{phase}</td>");
    }
    body.push_str("</tr>");
}

/// The query of a task's page.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TaskQuery {
    id: Option<String>,
}

/// One task: its status, and its transitions as they happen (the script listens).
pub(crate) async fn task<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<TaskQuery>,
) -> Response {
    let base = &inner.base;
    let raw = query.id.unwrap_or_default();
    let Ok(id) = S::Id::from_str(&raw) else {
        let detail = format!("{raw:?} is not an id");
        return problem(base, StatusCode::BAD_REQUEST, "No such task", &detail);
    };
    let status = match inner.source.status(&id).await {
        Ok(status) => status,
        Err(e) => return unavailable(base, &e),
    };
    let shown = id.to_string();
    let title = format!("Task {shown}");
    let mut body = task_body(&shown, &status);
    let offered = match status.phase {
        TaskPhase::Working => Some(Action::Cancel),
        TaskPhase::Failed | TaskPhase::NotFound => Some(Action::Retry),
        TaskPhase::Success => Some(Action::Revoke),
        _ => None,
    };
    // Offered (with the token) only to a viewer the application would let act.
    let offered =
        offered.filter(|&a| inner.actions.allows(a) && inner.actions.authorized(&headers));
    if let Some(action) = offered {
        body.push_str(&crate::actions::form(base, &inner.csrf, action, &shown));
    }
    respond(StatusCode::OK, html::page(base, &title, &body))
}

fn task_body(id: &str, s: &TaskStatus) -> String {
    let mut rows: Vec<(&str, String)> = vec![("Phase", s.phase.to_string())];
    if let Some(attempts) = s.attempts {
        rows.push(("Attempts", attempts.to_string()));
    }
    if s.queued {
        rows.push(("Queued", "waiting for a running slot".to_string()));
    }
    if let Some(reason) = s.last_failure {
        rows.push(("Failure", reason.to_string()));
    }
    if let Some(kept) = &s.kept {
        let shown = match (kept.output(), kept.message()) {
            (Some(output), _) => ("Result", output.to_string()),
            (None, Some(message)) => ("Message", message.to_string()),
            (None, None) => ("Result", "too large to keep".to_string()),
        };
        rows.push(shown);
    }
    if let Some(progress) = s.progress {
        rows.push(("Progress", progress.to_string()));
    }
    if let Some(at) = s.started_at {
        rows.push(("Since", html::utc(at)));
    }
    if let Some(at) = s.retry_at {
        rows.push(("Next attempt", html::utc(at)));
    }
    let mut body = String::from(r#"<table class="status"><tbody>"#);
    for (label, value) in rows {
        let _ = write!(
            body,
            r#"<tr><th>{label}</th><td class="{}">{}</td></tr>"#,
            label.to_ascii_lowercase().replace(' ', "-"),
            text(&value)
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        r#"<h2>Transitions</h2><ol id="transitions" data-id="{}"></ol><p id="live" class="live">connecting…</p>"#,
        url_part(id)
    );
    body
}
