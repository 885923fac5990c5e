//! Every error type is `Send + Sync + 'static` where its contents allow, and the
//! errors that hand a future back drop it on request, so that `?` works into
//! `Box<dyn Error + Send + Sync>` (what `anyhow::Error` also asks for), also for
//! futures that are not `Sync`. Each use below must compile, and runs.

use std::cell::Cell;
use std::error::Error;

use async_tasks_recorder::{
    AsyncTasksRecorder, LaunchError, LaunchOptions, PanicPayload, ParseNameError, RevokeFailReason,
    StoreError, TaskError,
};

type AnyError = Box<dyn Error + Send + Sync + 'static>;

fn is_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn the_error_types_are_send_and_sync() {
    is_send_sync::<TaskError<std::io::Error>>();
    is_send_sync::<PanicPayload>();
    is_send_sync::<LaunchError<()>>();
    is_send_sync::<RevokeFailReason<(), std::io::Error>>();
    is_send_sync::<StoreError>();
    is_send_sync::<ParseNameError>();
    #[cfg(feature = "redis")]
    is_send_sync::<async_tasks_recorder::redis::RevokeError<(), std::io::Error>>();
}

/// A future that holds a `Cell` across an await: `Send`, but not `Sync`.
async fn upload(fail: bool) -> Result<u32, std::io::Error> {
    let progress = Cell::new(0u32);
    tokio::task::yield_now().await;
    progress.set(progress.get() + 1);
    if fail {
        return Err(std::io::Error::other("disk full on /var"));
    }
    Ok(progress.get())
}

async fn service(rec: &AsyncTasksRecorder<u64>, id: u64, fail: bool) -> Result<u32, AnyError> {
    let handle = rec
        .launch_with(id, upload(fail), LaunchOptions::new())
        .await
        .map_err(LaunchError::drop_future)?;
    let written = handle.await?;
    rec.revoke_task_block(id, async { Ok::<_, std::io::Error>(()) })
        .await
        .map_err(RevokeFailReason::drop_future)?;
    Ok(written)
}

#[tokio::test]
async fn question_mark_carries_each_error() {
    let rec = AsyncTasksRecorder::new();
    assert_eq!(service(&rec, 1, false).await.unwrap(), 1);

    // The task's own error, with its message, through `handle.await?`.
    let e = service(&rec, 2, true).await.unwrap_err();
    assert!(e.to_string().contains("the task failed"), "{e}");
    let task_error = e
        .downcast_ref::<TaskError<std::io::Error>>()
        .expect("a TaskError");
    assert_eq!(
        task_error.source().map(|s| s.to_string()).as_deref(),
        Some("disk full on /var")
    );

    // A refused launch, without its future.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    rec.launch(3, async move { released.await.map_err(drop) })
        .await
        .unwrap_or_else(|_| panic!("launched"));
    let e = service(&rec, 3, false).await.unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<LaunchError<()>>(),
            Some(LaunchError::Refused(..))
        ),
        "{e}"
    );
    release.send(()).unwrap();

    // A panic's payload travels too, and keeps its message.
    let handle = rec
        .launch_with(
            4,
            async {
                if true {
                    panic!("boom (expected by the test)");
                }
                Ok::<(), std::io::Error>(())
            },
            LaunchOptions::new(),
        )
        .await
        .map_err(LaunchError::drop_future)
        .unwrap();
    let e: AnyError = handle.await.unwrap_err().into();
    match e.downcast_ref::<TaskError<std::io::Error>>() {
        Some(TaskError::Panicked(payload)) => {
            assert_eq!(
                payload.message().as_deref(),
                Some("boom (expected by the test)")
            );
        }
        other => panic!("{other:?}"),
    }
}
