//! The dashboard in a real browser: headless Chromium driven through ChromeDriver, on
//! a service served on a loopback port. Screenshots of the pages it checks are saved
//! under `target/dashboard-screenshots/`.
//!
//! One test drives every page in turn, so that one browser serves them all.

#[path = "support/common.rs"]
mod common;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, TaskPhase};
use async_tasks_recorder_dashboard::Dashboard;
use common::{ended, fail, serve_app};
use serde_json::Value;
use webdriver::Browser;

/// The token the service's authorisation hook accepts, from a cookie or a bearer
/// header.
const TOKEN: &str = "s3cret-for-the-test";

/// Ids that would be markup, an attribute break-out or a path if shown as they are.
const NASTY: [&str; 3] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "../../etc",
];

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
}

/// Whether the request carries the token, as a bearer header or an `atr_token`
/// cookie.
fn authorized(headers: &axum::http::HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    let cookie = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim() == format!("atr_token={TOKEN}"));
    bearer || cookie
}

/// The service: a recorder with the dashboard at `/admin/tasks`, cancel, retry (the
/// rebuilt task succeeds) and revoke allowed to requests with the token.
async fn serve(recorder: AsyncTasksRecorder<String>) -> String {
    let app = Dashboard::new(recorder)
        .page_size(50)
        .authorize(authorized)
        .cancel()
        .retry(|_id: &String| async { Ok::<(), String>(()) })
        .revoke(|_id: &String| async { Ok::<(), String>(()) })
        .router("/admin/tasks");
    let addr = serve_app(app).await;
    format!("http://{addr}/admin/tasks")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Nothing the page shows ran as a script: no dialog opened, no image was made from
/// an id, and the only script is the dashboard's.
async fn assert_nothing_ran(browser: &Browser, page: &str) {
    assert_eq!(browser.alert().await, None, "a dialog opened on {page}");
    let found = browser
        .run("return [document.images.length, document.scripts.length];")
        .await;
    assert_eq!(found, serde_json::json!([0, 1]), "on {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    let recorder = AsyncTasksRecorder::<String>::new();
    for n in 0..1000 {
        ended(&recorder, &format!("upload-{n:04}"), false).await;
    }
    for n in 0..3 {
        ended(&recorder, &format!("done-{n}"), true).await;
    }
    fail(&recorder, "report-7", "disk full on /var").await;
    for id in NASTY {
        fail(&recorder, id, &format!("<b>bad</b> {id}")).await;
    }
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    recorder
        .launch("nightly-export".to_string(), async move {
            let _ = gate.await;
            Ok::<(), ()>(())
        })
        .await
        .unwrap_or_else(|_| panic!("launches"));
    recorder
        .launch(
            "stuck-job".to_string(),
            std::future::pending::<Result<(), ()>>(),
        )
        .await
        .unwrap_or_else(|_| panic!("launches"));
    let base = serve(recorder.clone()).await;
    let browser = Browser::start().await;

    // The overview's counts change when a task finishes, without a reload.
    browser.open(&format!("{base}/")).await;
    browser
        .until("the live stream connected", || async {
            browser.text("#live").await == "live"
        })
        .await;
    browser.expect_text("#count-success", "3").await;
    browser.expect_text("#count-working", "2").await;
    browser.run("window.notReloaded = true; return true;").await;
    release.send(()).expect("the task waits");
    browser
        .until("the new count", || async {
            browser.text("#count-success").await == "4"
        })
        .await;
    browser.expect_text("#count-working", "1").await;
    assert_eq!(
        browser.run("return window.notReloaded === true;").await,
        Value::Bool(true)
    );
    // A second or two of the chart.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    browser
        .screenshot(&screenshots().join("overview.png"))
        .await;

    // Paging through the 1,000 failed ids (and the four others).
    browser.open(&format!("{base}/list?state=failed")).await;
    browser.screenshot(&screenshots().join("list.png")).await;
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let ids = browser
            .run("return Array.from(document.querySelectorAll('a.id')).map(a => a.textContent);")
            .await;
        let ids = strings(&ids);
        assert!(
            !ids.is_empty() && ids.len() <= 50,
            "{} ids on a page",
            ids.len()
        );
        for id in ids {
            assert!(seen.insert(id.clone()), "{id} listed twice");
        }
        assert_nothing_ran(&browser, "a list page").await;
        pages += 1;
        assert!(pages <= 30, "more pages than the ids need");
        if browser.find("#next").await.is_none() {
            break;
        }
        browser.click_to_page("#next").await;
    }
    assert_eq!(seen.len(), 1000 + 1 + NASTY.len());
    for id in NASTY {
        assert!(seen.contains(id), "{id:?} listed as text");
    }

    // A task's page shows its failure and message.
    browser.open(&format!("{base}/task?id=report-7")).await;
    browser.expect_text("td.phase", "failed").await;
    browser.expect_text("td.failure", "error").await;
    browser.expect_text("td.message", "disk full on /var").await;
    browser.screenshot(&screenshots().join("task.png")).await;

    // The ids that are markup show as text on their pages, and nothing runs.
    for id in NASTY {
        let encoded: String = id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        browser.open(&format!("{base}/task?id={encoded}")).await;
        browser.expect_text("h1", &format!("Task {id}")).await;
        browser
            .expect_text("td.message", &format!("<b>bad</b> {id}"))
            .await;
        assert_nothing_ran(&browser, id).await;
        browser
            .open(&format!("{base}/list?state=failed&q={encoded}"))
            .await;
        browser.expect_text("a.id", id).await;
        assert_nothing_ran(&browser, id).await;
    }

    // Without the authorisation a task's page offers no action...
    browser.open(&format!("{base}/task?id=stuck-job")).await;
    browser.expect_text("td.phase", "working").await;
    assert!(browser.find("#cancel").await.is_none(), "cancel offered");
    // ...and a form from a page shown with it is refused once it is gone...
    let forget = "document.cookie = 'atr_token=; path=/; max-age=0'; return true;";
    browser.set_cookie("atr_token", TOKEN).await;
    browser.open(&format!("{base}/task?id=stuck-job")).await;
    browser.run(forget).await;
    browser.click_to_page("#cancel").await;
    browser.expect_text("h1", "Not done").await;
    assert_eq!(recorder.status("stuck-job").await.phase, TaskPhase::Working);
    // ...and works with it.
    browser.set_cookie("atr_token", TOKEN).await;
    browser.open(&format!("{base}/task?id=stuck-job")).await;
    browser.click_to_page("#cancel").await;
    browser.expect_text("td.phase", "failed").await;
    browser.expect_text("td.failure", "cancelled").await;

    // Retry, likewise: refused without, done with.
    browser.open(&format!("{base}/task?id=report-7")).await;
    browser.run(forget).await;
    browser.click_to_page("#retry").await;
    browser.expect_text("h1", "Not done").await;
    assert_eq!(recorder.status("report-7").await.phase, TaskPhase::Failed);
    browser.set_cookie("atr_token", TOKEN).await;
    browser.open(&format!("{base}/task?id=report-7")).await;
    browser.click_to_page("#retry").await;
    browser
        .until("the retried task's success", || async {
            browser.open(&format!("{base}/task?id=report-7")).await;
            browser.text("td.phase").await == "success"
        })
        .await;
}
