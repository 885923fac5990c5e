//! The actions: cancel a running task, retry a failed one, revoke a succeeded one.
//!
//! Each is a POST of a form from the task's page, and is done only if the
//! application allowed it ([`Dashboard::authorize`](crate::Dashboard::authorize) and
//! the action's own method), the application's authorisation hook accepts the
//! request, the browser does not say it comes from another site (`Sec-Fetch-Site`),
//! and the form carries the dashboard's CSRF token, which only pages shown to a
//! viewer the hook accepts hold (another origin cannot read them). Anything else
//! answers `403 Forbidden` and changes nothing; a form that is not one (a missing
//! field, another content type) is rejected by axum (`4xx`) before any of this.
//! The id travels percent-encoded in the form, so that it survives the trip through
//! an HTML attribute whatever it holds.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;

use crate::html::{self, text, url_part};
use crate::pages::respond;
use crate::source::{Refused, Source};
use crate::Inner;

/// What an action's form sends.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ActionForm {
    id: String,
    csrf: String,
}

/// An action of the task page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Cancel,
    Retry,
    Revoke,
}

impl Action {
    pub(crate) const fn path(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Retry => "retry",
            Action::Revoke => "revoke",
        }
    }

    const fn label(self) -> &'static str {
        match self {
            Action::Cancel => "Cancel",
            Action::Retry => "Retry",
            Action::Revoke => "Revoke",
        }
    }
}

/// A token no other origin can guess: 128 bits from the standard library's randomly
/// keyed hasher (keyed from the operating system's randomness), mixed with the time.
pub(crate) fn csrf_token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut token = String::with_capacity(32);
    for half in 0..2u64 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(half);
        hasher.write_u128(now);
        let _ = write!(token, "{:016x}", hasher.finish());
    }
    token
}

/// The form of `action` for `id`, as the task page shows it.
pub(crate) fn form(base: &str, csrf: &str, action: Action, id: &str) -> String {
    format!(
        r#"<form class="action" method="post" action="{}/task/{}"><input type="hidden" name="id" value="{}"><input type="hidden" name="csrf" value="{}"><button type="submit" id="{}">{}</button></form>"#,
        text(base),
        action.path(),
        url_part(id),
        text(csrf),
        action.path(),
        action.label()
    )
}

/// Whether two tokens are equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

fn refused(base: &str, status: StatusCode, detail: &str) -> Response {
    let body = format!(r#"<p class="problem">{}</p>"#, text(detail));
    respond(status, html::page(base, "Not done", &body))
}

pub(crate) async fn cancel<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&inner, &headers, form, Action::Cancel).await
}

pub(crate) async fn retry<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&inner, &headers, form, Action::Retry).await
}

pub(crate) async fn revoke<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&inner, &headers, form, Action::Revoke).await
}

async fn act<S: Source>(
    inner: &Inner<S>,
    headers: &HeaderMap,
    form: ActionForm,
    action: Action,
) -> Response {
    let base = &inner.base;
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let allowed = inner.actions.allows(action) && inner.actions.authorized(headers);
    if !allowed || cross_site || !same(&form.csrf, &inner.csrf) {
        return refused(
            base,
            StatusCode::FORBIDDEN,
            "This action is not allowed here.",
        );
    }
    let Some(Ok(id)) = html::from_url_part(&form.id).map(|raw| S::Id::from_str(&raw)) else {
        let detail = format!("{:?} is not an id", form.id);
        return refused(base, StatusCode::BAD_REQUEST, &detail);
    };
    let done = match action {
        Action::Cancel => inner.source.cancel(&id).await.map(|cancelled| {
            if cancelled {
                Ok(())
            } else {
                Err("Nothing was running for this id.".to_string())
            }
        }),
        Action::Retry => {
            let make = inner.actions.retry.as_ref().expect("allowed above");
            let task = make(&id);
            inner
                .source
                .relaunch(id.clone(), task)
                .await
                .map(|r| r.map_err(explain))
        }
        Action::Revoke => {
            let make = inner.actions.revoke.as_ref().expect("allowed above");
            let task = make(&id);
            // In a task of its own: a browser that goes away must not stop a
            // compensation half way.
            let source = inner.source.clone();
            let revoking = id.clone();
            match tokio::spawn(async move { source.revoke(revoking, task).await }).await {
                Ok(revoked) => revoked.map(|r| r.map_err(explain)),
                Err(_panicked) => Ok(Err(
                    "The revoke future panicked; the id is a success again.".to_string(),
                )),
            }
        }
    };
    match done {
        Err(e) => refused(base, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Err(why)) if why.starts_with(CLOSED) => {
            refused(base, StatusCode::SERVICE_UNAVAILABLE, &why)
        }
        Ok(Err(why)) => refused(base, StatusCode::CONFLICT, &why),
        Ok(Ok(())) => {
            let to = format!("{base}/task?id={}", url_part(&id.to_string()));
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&to) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    }
}

/// How [`explain`] begins for a recorder that takes no more launches.
const CLOSED: &str = "The recorder takes no more launches";

fn explain(refused: Refused) -> String {
    match refused {
        Refused::State(state) => {
            format!("The id is {state}: only a failed or unknown id is retried.")
        }
        Refused::NotSuccess => "The id is not a success: only a success is revoked.".to_string(),
        Refused::Revoking => "Another revoke of this id is running.".to_string(),
        Refused::RevokeFailed(why) => {
            format!("The revoke failed, and the id is a success again: {why}")
        }
        Refused::Closed => format!("{CLOSED} (it was closed), or the revoke lost its lease."),
    }
}

/// The application's authorisation hook.
pub(crate) type Hook = Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync>;

/// The application's function that makes an action's future from an id.
pub(crate) type MakeTask<Id> = Arc<dyn Fn(&Id) -> crate::BoxTask + Send + Sync>;

/// What the application allowed.
pub(crate) struct Actions<Id> {
    pub(crate) authorize: Option<Hook>,
    pub(crate) cancel: bool,
    pub(crate) retry: Option<MakeTask<Id>>,
    pub(crate) revoke: Option<MakeTask<Id>>,
}

impl<Id> Clone for Actions<Id> {
    fn clone(&self) -> Self {
        Actions {
            authorize: self.authorize.clone(),
            cancel: self.cancel,
            retry: self.retry.clone(),
            revoke: self.revoke.clone(),
        }
    }
}

impl<Id> std::fmt::Debug for Actions<Id> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("authorize", &self.authorize.is_some())
            .field("cancel", &self.cancel)
            .field("retry", &self.retry.is_some())
            .field("revoke", &self.revoke.is_some())
            .finish()
    }
}

impl<Id> Actions<Id> {
    pub(crate) fn none() -> Self {
        Actions {
            authorize: None,
            cancel: false,
            retry: None,
            revoke: None,
        }
    }

    /// Whether `action` may be offered at all: the application gave an authorisation
    /// hook and what the action needs.
    pub(crate) fn allows(&self, action: Action) -> bool {
        self.authorize.is_some()
            && match action {
                Action::Cancel => self.cancel,
                Action::Retry => self.retry.is_some(),
                Action::Revoke => self.revoke.is_some(),
            }
    }

    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        self.authorize.as_ref().is_some_and(|hook| hook(headers))
    }
}
