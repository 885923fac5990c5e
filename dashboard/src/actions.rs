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

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;

use crate::html::{self, text, url_part};
use crate::pages::problem;
use crate::source::{Refused, Source, Unavailable};
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
    /// The action of a path segment.
    fn named(name: &str) -> Option<Action> {
        [Action::Cancel, Action::Retry, Action::Revoke]
            .into_iter()
            .find(|a| a.path() == name)
    }

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

/// `POST {prefix}/task/{action}`: the action named by the path, on the form's id.
pub(crate) async fn act<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let base = &inner.base;
    let not_done = |status, detail: &str| problem(base, status, "Not done", detail);
    let Some(action) = Action::named(&name) else {
        return not_done(StatusCode::NOT_FOUND, "No such action.");
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let allowed = inner.actions.allows(action) && inner.actions.authorized(&headers);
    if !allowed || cross_site || !same(&form.csrf, &inner.csrf) {
        return not_done(StatusCode::FORBIDDEN, "This action is not allowed here.");
    }
    let Some(Ok(id)) = html::from_url_part(&form.id).map(|raw| S::Id::from_str(&raw)) else {
        return not_done(
            StatusCode::BAD_REQUEST,
            &format!("{:?} is not an id", form.id),
        );
    };
    match perform(&inner, action, &id).await {
        Err((status, why)) => not_done(status, &why),
        Ok(()) => {
            let to = format!("{base}/task?id={}", url_part(&id.to_string()));
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&to) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    }
}

/// Does `action` on `id`; why not (with the status that says it) otherwise.
async fn perform<S: Source>(
    inner: &Inner<S>,
    action: Action,
    id: &S::Id,
) -> Result<(), (StatusCode, String)> {
    let unavailable = |e: Unavailable| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    match action {
        Action::Cancel => match inner.source.cancel(id).await.map_err(unavailable)? {
            true => Ok(()),
            false => Err((
                StatusCode::CONFLICT,
                "Nothing was running for this id.".to_string(),
            )),
        },
        Action::Retry => {
            let make = inner.actions.retry.as_ref().expect("allowed before");
            let relaunched = inner.source.relaunch(id.clone(), make(id)).await;
            relaunched.map_err(unavailable)?.map_err(explain)
        }
        Action::Revoke => {
            let make = inner.actions.revoke.as_ref().expect("allowed before");
            let (source, revoking, task) = (inner.source.clone(), id.clone(), make(id));
            // In a task of its own: a browser that goes away must not stop a
            // compensation half way.
            match tokio::spawn(async move { source.revoke(revoking, task).await }).await {
                Ok(revoked) => revoked.map_err(unavailable)?.map_err(explain),
                Err(_panicked) => Err((
                    StatusCode::CONFLICT,
                    "The revoke future panicked; the id is a success again.".to_string(),
                )),
            }
        }
    }
}

fn explain(refused: Refused) -> (StatusCode, String) {
    let conflict = |why: String| (StatusCode::CONFLICT, why);
    match refused {
        Refused::State(state) => conflict(format!(
            "The id is {state}: only a failed or unknown id is retried."
        )),
        Refused::NotSuccess => {
            conflict("The id is not a success: only a success is revoked.".to_string())
        }
        Refused::Revoking => conflict("Another revoke of this id is running.".to_string()),
        Refused::RevokeFailed(why) => conflict(format!(
            "The revoke failed, and the id is a success again: {why}"
        )),
        Refused::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The recorder takes no more launches (it was closed), or the revoke lost its lease."
                .to_string(),
        ),
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
