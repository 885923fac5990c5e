//! Paged listings (`list_page`) on both stores: every id of a quiet state exactly once
//! in pages of the asked size, cursors that survive a trip through text, and, in
//! memory, the exactly-once guarantee for ids that stay in the state while others
//! move between pages.

mod common;
#[path = "support/redis_server.rs"]
#[cfg(feature = "redis")]
mod redis_server;

use std::collections::HashMap;

use async_tasks_recorder::{AsyncTasksRecorder, ListCursor, Page, TaskState};
use common::*;

/// Asks `page` for every page from the first, the cursor passed as text in between
/// (as in a URL); checks each page's size; returns how often each id came, and the
/// number of pages.
async fn every_page<F, Fut>(limit: usize, most: usize, mut page: F) -> (HashMap<u64, usize>, usize)
where
    F: FnMut(Option<ListCursor>) -> Fut,
    Fut: std::future::Future<Output = Page<u64>>,
{
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor = after.as_deref().map(|s| s.parse::<ListCursor>().unwrap());
        let got = bounded("a page", page(cursor)).await;
        pages += 1;
        assert!(
            got.ids.len() <= most,
            "{} ids in a page of {limit}",
            got.ids.len()
        );
        for id in got.ids {
            *seen.entry(id).or_default() += 1;
        }
        match got.next {
            Some(next) => after = Some(next.to_string()),
            None => return (seen, pages),
        }
        assert!(pages < 1000, "the listing ends");
    }
}

async fn fail(rec: &AsyncTasksRecorder<u64>, id: u64) {
    rec.launch_block(id, err()).await.launched();
}

#[tokio::test]
async fn memory_pages_list_every_id_once() {
    let rec = AsyncTasksRecorder::new();
    for id in 0..1000 {
        fail(&rec, id).await;
    }
    for id in 1000..1500 {
        rec.launch_block(id, ok()).await.launched();
    }
    let (seen, pages) = every_page(20, 20, |cursor| {
        let rec = rec.clone();
        async move { rec.list_page(TaskState::Failed, cursor.as_ref(), 20).await }
    })
    .await;
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|(id, n)| *id < 1000 && *n == 1), "{seen:?}");
    assert!(pages >= 50, "pages of 20: {pages}");
    // A page of the empty state, and of NotFound, ends at once.
    let page = rec.list_page(TaskState::Working, None, 20).await;
    assert!(page.ids.is_empty() && page.next.is_none());
    assert!(rec
        .list_page(TaskState::NotFound, None, 5)
        .await
        .next
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_stay_are_listed_once_while_others_move() {
    let rec = AsyncTasksRecorder::new();
    // 0..1000 stay Failed; 1000.. come and go between the pages.
    for id in 0..1000 {
        fail(&rec, id).await;
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut cursor = None;
    let mut next_mobile = 1000u64;
    loop {
        let page = rec.list_page(TaskState::Failed, cursor.as_ref(), 7).await;
        for id in page.ids {
            *seen.entry(id).or_default() += 1;
        }
        // New failures, failures that succeed on a relaunch, and revokes of those.
        for _ in 0..5 {
            fail(&rec, next_mobile).await;
            next_mobile += 1;
        }
        let back = next_mobile - 3;
        rec.launch_block(back, ok()).await.launched();
        let _ = rec.revoke_task_block(back, ok()).await;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for id in 0..1000 {
        assert_eq!(seen.get(&id), Some(&1), "id {id}");
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "at most once for the others"
    );
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pages_list_every_id() {
    use async_tasks_recorder::redis::RedisRecorder;
    let server = redis_server::RedisServer::start();
    let rec: RedisRecorder<u64> = bounded(
        "build",
        RedisRecorder::builder(server.url())
            .namespace("pages")
            .build(),
    )
    .await
    .unwrap();
    for id in 0..1000u64 {
        rec.launch_block(id, err()).await.unwrap();
    }
    for id in 1000..1300u64 {
        rec.launch_block(id, ok()).await.unwrap();
    }
    // A small hash comes whole: a page holds at most one group's more.
    let (seen, _) = every_page(20, 20 + 128, |cursor| {
        let rec = rec.clone();
        async move {
            rec.list_page(TaskState::Failed, cursor.as_ref(), 20)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(seen.len(), 1000);
    assert!(seen.keys().all(|id| *id < 1000));
    assert!(seen.values().all(|n| *n <= 2), "at most twice");
    let success = rec.list_page(TaskState::Success, None, 1000).await.unwrap();
    assert!(success.ids.len() <= 300);
    // A cursor of a state with two hashes, at its second, used for a state with one:
    // the listing ends instead of answering the same cursor again.
    let mut page = rec.list_page(TaskState::Success, None, 1).await.unwrap();
    let second_pass = loop {
        let next = page.next.expect("more pages of Success");
        if next.to_string().split('.').nth(1) == Some("1") {
            break next;
        }
        page = rec
            .list_page(TaskState::Success, Some(&next), 1)
            .await
            .unwrap();
    };
    let other = rec
        .list_page(TaskState::Failed, Some(&second_pass), 20)
        .await
        .unwrap();
    assert!(other.ids.is_empty() && other.next.is_none(), "{other:?}");
    // A cursor of the other kind ends the listing.
    let memory = AsyncTasksRecorder::<u64>::new();
    fail(&memory, 1).await;
    let redis_cursor = rec
        .list_page(TaskState::Failed, None, 1)
        .await
        .unwrap()
        .next
        .expect("more pages");
    let foreign = memory
        .list_page(TaskState::Failed, Some(&redis_cursor), 5)
        .await;
    assert!(foreign.ids.is_empty() && foreign.next.is_none());
}
