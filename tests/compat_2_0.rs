//! A program written against the 2.0.2 entry points, in the style of 2.0.2's own
//! example and tests (ids as `Arc<String>` and `String`, `let _ =` on launches, state
//! comparisons with `==` and `.clone()`, revokes checked with `is_ok()`), compiled
//! unchanged against 3.0. (2.0.2's own test suite and example were also run against
//! 3.0 when it was released; see the CHANGELOG.)
#![allow(clippy::clone_on_copy, clippy::redundant_clone)]

use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskState};

#[derive(Debug, PartialEq)]
enum Upload {
    Uploading,
    Done,
    Broken,
    Unknown,
}

async fn status(recorder: AsyncTasksRecorder<Arc<String>>, md5: String) -> Upload {
    let md5 = Arc::new(md5);
    match recorder.query_task_state(&md5).await {
        TaskState::Working => Upload::Uploading,
        TaskState::Success => Upload::Done,
        TaskState::Failed => Upload::Broken,
        TaskState::NotFound => Upload::Unknown,
    }
}

async fn upload(recorder: AsyncTasksRecorder<Arc<String>>, md5: String, fail: bool) {
    let fut = async move {
        tokio::task::yield_now().await;
        if fail {
            Err("network down".to_string())
        } else {
            Ok(())
        }
    };
    let _ = recorder.launch(md5.into(), fut).await;
}

async fn delete(recorder: AsyncTasksRecorder<Arc<String>>, md5: String) -> bool {
    let fut = async { Ok::<(), ()>(()) };
    let res = recorder.revoke_task_block(Arc::new(md5), fut).await;
    res.is_ok()
}

/// Polls until the upload is no longer running. The deadline is a hang guard only,
/// generous enough for a slow, loaded machine.
async fn wait_final(recorder: &AsyncTasksRecorder<Arc<String>>, md5: &str) -> Upload {
    const HANG: std::time::Duration = std::time::Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let s = status(recorder.clone(), md5.to_string()).await;
        if s != Upload::Uploading {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("hung: upload {md5} still Uploading after {HANG:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

async fn scenario() {
    let recorder = AsyncTasksRecorder::new();
    let md5 = "d41d8cd98f00b204e9800998ecf8427e".to_string();
    assert_eq!(status(recorder.clone(), md5.clone()).await, Upload::Unknown);
    upload(recorder.clone(), md5.clone(), false).await;
    assert_ne!(status(recorder.clone(), md5.clone()).await, Upload::Unknown);
    assert_eq!(wait_final(&recorder, &md5).await, Upload::Done);
    assert!(delete(recorder.clone(), md5.clone()).await);
    assert_eq!(status(recorder.clone(), md5.clone()).await, Upload::Unknown);
    assert!(!delete(recorder.clone(), md5.clone()).await);

    upload(recorder.clone(), md5.clone(), true).await;
    assert_eq!(wait_final(&recorder, &md5).await, Upload::Broken);
    upload(recorder.clone(), md5.clone(), false).await;
    assert_eq!(wait_final(&recorder, &md5).await, Upload::Done);
}

async fn string_ids_and_errors() {
    let manager: AsyncTasksRecorder<String> = AsyncTasksRecorder::new();
    let id = "task_000001".to_string();
    let res = manager
        .launch_block(id.clone(), async { Ok::<u8, String>(1) })
        .await;
    assert!(res.is_ok());
    let state = manager.query_task_state(&id).await;
    let previous = state.clone();
    assert!(previous == TaskState::Success);
    assert_eq!(
        manager.query_task_state_quick(id.as_str()).await,
        TaskState::Success
    );
    match manager
        .launch(id.clone(), async { Ok::<u8, String>(2) })
        .await
    {
        Err((TaskState::Success, _fut)) => {}
        _ => panic!("a succeeded task must not run again"),
    }
    let revoke = manager
        .revoke_task_block(id.clone(), async { Err::<(), String>("busy".into()) })
        .await;
    match revoke {
        Err(RevokeFailReason::RevokeTaskError(e)) => assert_eq!(e, "busy"),
        Err(RevokeFailReason::NotSuccess(_)) | Err(RevokeFailReason::Revoking(_)) => panic!(),
        Ok(()) => panic!(),
    }
}

#[test]
fn two_zero_program_multi_thread() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            scenario().await;
            string_ids_and_errors().await;
        });
}

#[test]
fn two_zero_program_current_thread() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            scenario().await;
            string_ids_and_errors().await;
        });
}
