//! The dashboard over HTTP, on a loopback port: what each page shows, that ids and
//! messages are shown as text whatever they contain, paging, the headers, and the
//! live stream.

#[path = "support/common.rs"]
mod common;

use std::collections::HashSet;

use async_tasks_recorder::AsyncTasksRecorder;
use async_tasks_recorder_dashboard::Dashboard;
use common::{bounded, ended, fail, serve_app, until_event, HANG};

/// Ids that would be markup, an attribute break-out or a path if shown or linked
/// as they are.
const NASTY: [&str; 5] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "../../etc",
    "a&b=c#d?e",
    "'; drop table tasks; --",
];

/// The dashboard of `recorder` served on a free loopback port under `/admin/tasks`;
/// the server task ends with the test's runtime.
async fn serve(recorder: AsyncTasksRecorder<String>, page_size: usize) -> String {
    let app = Dashboard::new(recorder)
        .page_size(page_size)
        .router("/admin/tasks");
    let addr = serve_app(app).await;
    format!("http://{addr}/admin/tasks")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HANG)
        .build()
        .expect("a client")
}

/// GETs `url`: the status, the Content-Security-Policy, the body.
async fn get(url: &str) -> (u16, Option<String>, String) {
    get_as(url, None).await
}

/// [`get`], with a bearer token if given.
async fn get_as(url: &str, bearer: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = client().get(url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = bounded("a page", request.send())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let csp = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().expect("ascii").to_string());
    let body = bounded("a body", response.text()).await.expect("a body");
    (status, csp, body)
}

/// `s` as the dashboard writes text into a page.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `s` as a URL query value.
fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Asserts that `page` shows `id` as text: escaped, and (where escaping changes it:
/// an id that is markup) never raw.
fn assert_shows_as_text(page: &str, id: &str) {
    let shown = escaped(id);
    assert!(
        shown == id || !page.contains(id),
        "the page holds the raw id {id:?}, which a browser would read as markup:\n{page}"
    );
    assert!(
        page.contains(&shown),
        "the page does not show {id:?}:\n{page}"
    );
}

/// Asserts what every page must: the policy that forbids inline scripts and other
/// origins, and no script but the dashboard's own.
fn assert_safe_frame(csp: Option<&str>, page: &str) {
    let csp = csp.expect("a Content-Security-Policy header");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(page.contains(r#"<script src="/admin/tasks/assets/app.js" defer></script>"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_shows_ids_and_messages_as_text() {
    let recorder = AsyncTasksRecorder::<String>::new();
    for id in NASTY {
        fail(&recorder, id, &format!("<b>disk full</b> for {id}")).await;
    }
    let base = serve(recorder.clone(), 50).await;

    let (status, csp, list) = get(&format!("{base}/list?state=failed")).await;
    assert_eq!(status, 200);
    assert_safe_frame(csp.as_deref(), &list);
    for id in NASTY {
        assert_shows_as_text(&list, id);
        assert!(
            list.contains(&format!(r#"href="/admin/tasks/task?id={}""#, encoded(id))),
            "no encoded link to {id:?}:\n{list}"
        );
        let (status, csp, page) = get(&format!("{base}/task?id={}", encoded(id))).await;
        assert_eq!(status, 200, "{page}");
        assert_safe_frame(csp.as_deref(), &page);
        assert_shows_as_text(&page, id);
        assert!(page.contains("<td class=\"phase\">failed</td>"), "{page}");
        assert!(page.contains("<td class=\"failure\">error</td>"), "{page}");
        let message = format!("<b>disk full</b> for {id}");
        assert_shows_as_text(&page, &message);
        // The search finds it too, and shows it (and the search) as text.
        let (_, _, found) = get(&format!("{base}/list?state=failed&q={}", encoded(id))).await;
        assert_shows_as_text(&found, id);
    }
}

/// The check above catches a page that shows an id unescaped.
#[test]
#[should_panic(expected = "which a browser would read as markup")]
fn a_deliberately_unescaped_id_is_caught() {
    let id = NASTY[0];
    let page = format!(r#"<a class="id" href="task?id={}">{id}</a>"#, encoded(id));
    assert_shows_as_text(&page, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_and_links_every_state() {
    let recorder = AsyncTasksRecorder::<String>::new();
    for n in 0..3 {
        ended(&recorder, &format!("ok-{n}"), true).await;
    }
    ended(&recorder, "bad", false).await;
    let base = serve(recorder, 50).await;
    let (status, csp, page) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert_safe_frame(csp.as_deref(), &page);
    assert!(page.contains(r#"<td id="count-success">3</td>"#), "{page}");
    assert!(page.contains(r#"<td id="count-failed">1</td>"#), "{page}");
    assert!(page.contains(r#"<td id="count-working">0</td>"#), "{page}");
    for state in ["working", "success", "failed"] {
        assert!(page.contains(&format!(r#"href="/admin/tasks/list?state={state}""#)));
    }
    // The prefix without its slash leads there; the assets are served.
    let response = bounded("a redirect", client().get(&base).send())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(response.headers()["location"], "/admin/tasks/");
    let (status, _, script) = get(&format!("{base}/assets/app.js")).await;
    assert_eq!(status, 200);
    assert!(script.contains("EventSource") && !script.contains("innerHTML"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lists_and_cursors_answer_400() {
    let base = serve(AsyncTasksRecorder::<String>::new(), 50).await;
    for query in ["state=bogus", "state=not_found", "state=failed&after=<x>"] {
        let (status, csp, page) = get(&format!("{base}/list?{query}")).await;
        assert_eq!(status, 400, "{query}: {page}");
        assert_safe_frame(csp.as_deref(), &page);
        assert!(!page.contains("<x>"), "{page}");
    }
}

/// The ids a list page links to, and its next page's address.
fn ids_and_next(page: &str) -> (Vec<String>, Option<String>) {
    let mut ids = Vec::new();
    for part in page.split(r#"<a class="id" href=""#).skip(1) {
        let text = part.split_once('>').expect("a link").1;
        let text = text.split_once("</a>").expect("a link's end").0;
        ids.push(text.to_string());
    }
    let next = page.split_once(r#"<a id="next" href=""#).map(|(_, rest)| {
        rest.split_once('"')
            .expect("a quoted address")
            .0
            .replace("&amp;", "&")
    });
    (ids, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_a_thousand_failed_ids() {
    let recorder = AsyncTasksRecorder::<String>::new();
    for n in 0..1000 {
        ended(&recorder, &format!("upload-{n:04}"), false).await;
    }
    let base = serve(recorder, 50).await;
    let origin = base.trim_end_matches("/admin/tasks").to_string();
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut next = Some("/admin/tasks/list?state=failed".to_string());
    while let Some(path) = next {
        let (status, _, page) = get(&format!("{origin}{path}")).await;
        assert_eq!(status, 200, "{page}");
        let (ids, after) = ids_and_next(&page);
        assert!(ids.len() <= 50, "{} ids on a page", ids.len());
        for id in ids {
            assert!(seen.insert(id.clone()), "{id} listed twice");
        }
        pages += 1;
        assert!(pages <= 40, "more pages than the ids need");
        next = after;
    }
    assert_eq!(seen.len(), 1000);
    assert!((20..=21).contains(&pages), "{pages} pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_new_counts_and_a_task_s_transitions() {
    let recorder = AsyncTasksRecorder::<String>::new();
    let base = serve(recorder.clone(), 50).await;
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    recorder
        .launch("job".to_string(), async move {
            let _ = gate.await;
            Ok::<(), ()>(())
        })
        .await
        .unwrap_or_else(|_| panic!("launches"));

    let mut overview = bounded("the stream", client().get(format!("{base}/events")).send())
        .await
        .unwrap();
    assert_eq!(
        overview.headers()["content-type"],
        "text/event-stream",
        "an event stream"
    );
    let mut task = bounded(
        "the stream",
        client().get(format!("{base}/events?id=job")).send(),
    )
    .await
    .unwrap();
    let (mut a, mut b) = (String::new(), String::new());
    until_event(&mut overview, &mut a, |name, data| {
        name == "counts" && data.contains(r#""working":1"#) && data.contains(r#""success":0"#)
    })
    .await;
    until_event(&mut task, &mut b, |name, _| name == "counts").await;

    // The task ends: both streams hear of it, without a reload.
    release.send(()).unwrap();
    until_event(&mut overview, &mut a, |name, data| {
        name == "counts" && data.contains(r#""working":0"#) && data.contains(r#""success":1"#)
    })
    .await;
    until_event(&mut task, &mut b, |name, data| {
        name == "transition"
            && data == r#"{"from":"working","to":"success","failure":null,"progress":null}"#
    })
    .await;
    until_event(&mut overview, &mut a, |name, data| {
        name == "rate" && data.parse::<u64>().is_ok()
    })
    .await;
}

/// The token the task page's action form carries, if it offers one.
fn csrf_of(page: &str) -> Option<String> {
    let (_, rest) = page.split_once(r#"name="csrf" value=""#)?;
    Some(rest.split_once('"')?.0.to_string())
}

/// POSTs an action's form with `headers`; the status and the redirect, if any.
async fn post_action(
    url: &str,
    id: &str,
    csrf: &str,
    bearer: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("id={}&csrf={}", encoded(id), encoded(csrf)));
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = bounded("an action", request.send())
        .await
        .expect("an answer");
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_string());
    (response.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_dashboard_offers_no_action_and_refuses_them() {
    let recorder = AsyncTasksRecorder::<String>::new();
    ended(&recorder, "done", true).await;
    let base = serve(recorder.clone(), 50).await;
    let (_, _, page) = get(&format!("{base}/task?id=done")).await;
    assert!(!page.contains("<form class=\"action\""), "{page}");
    for action in ["cancel", "retry", "revoke"] {
        let (status, _) = post_action(&format!("{base}/task/{action}"), "done", "x", None).await;
        assert_eq!(status, 403, "{action}");
    }
    assert_eq!(
        recorder.status("done").await.phase,
        async_tasks_recorder::TaskPhase::Success
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_hook_s_consent_and_the_token_then_work() {
    use async_tasks_recorder::{FailureReason, TaskPhase};
    const TOKEN: &str = "s3cret";
    let recorder = AsyncTasksRecorder::<String>::new();
    let compensated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = compensated.clone();
    let app = Dashboard::new(recorder.clone())
        .authorize(|headers| {
            headers
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes())
        })
        .cancel()
        .retry(|_id: &String| async { Ok::<(), String>(()) })
        .revoke(move |_id: &String| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .router("/admin/tasks");
    let addr = serve_app(app).await;
    let base = format!("http://{addr}/admin/tasks");

    // A running task: the page offers cancel.
    recorder
        .launch("run".to_string(), std::future::pending::<Result<(), ()>>())
        .await
        .unwrap_or_else(|_| panic!("launches"));
    // Offered (with the token) only to a viewer the hook accepts.
    let (_, _, page) = get(&format!("{base}/task?id=run")).await;
    assert!(csrf_of(&page).is_none(), "{page}");
    let (_, _, page) = get_as(&format!("{base}/task?id=run"), Some(TOKEN)).await;
    assert!(
        page.contains(r#"<button type="submit" id="cancel">"#),
        "{page}"
    );
    let csrf = csrf_of(&page).expect("a token");
    let cancel = format!("{base}/task/cancel");
    // Refused without the authorisation, with a wrong one, or without the token.
    assert_eq!(post_action(&cancel, "run", &csrf, None).await.0, 403);
    assert_eq!(
        post_action(&cancel, "run", &csrf, Some("guess")).await.0,
        403
    );
    assert_eq!(
        post_action(&cancel, "run", "forged", Some(TOKEN)).await.0,
        403
    );
    assert_eq!(recorder.status("run").await.phase, TaskPhase::Working);
    // Done with both, and back to the task's page.
    let (status, location) = post_action(&cancel, "run", &csrf, Some(TOKEN)).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/admin/tasks/task?id=run"));
    let cancelled = recorder.status("run").await;
    assert_eq!(cancelled.phase, TaskPhase::Failed);
    assert_eq!(cancelled.last_failure, Some(FailureReason::Cancelled));

    // The failed task: retry launches the application's rebuilt future.
    let (_, _, page) = get_as(&format!("{base}/task?id=run"), Some(TOKEN)).await;
    assert!(page.contains(r#"id="retry""#), "{page}");
    let retry = format!("{base}/task/retry");
    assert_eq!(post_action(&retry, "run", &csrf, None).await.0, 403);
    assert_eq!(post_action(&retry, "run", &csrf, Some(TOKEN)).await.0, 303);
    let settled = bounded("the retry", recorder.wait("run")).await;
    assert_eq!(settled.phase, TaskPhase::Success);

    // The success: revoke runs the compensating future; a second finds nothing.
    let revoke = format!("{base}/task/revoke");
    assert_eq!(post_action(&revoke, "run", &csrf, None).await.0, 403);
    assert_eq!(post_action(&revoke, "run", &csrf, Some(TOKEN)).await.0, 303);
    assert_eq!(recorder.status("run").await.phase, TaskPhase::NotFound);
    assert_eq!(compensated.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(post_action(&revoke, "run", &csrf, Some(TOKEN)).await.0, 409);
}
