//! The state and reason enums parse the names they print, and, with the `serde`
//! feature, every public value type round-trips through JSON under those names.

use std::str::FromStr;

use async_tasks_recorder::{FailureReason, ParseNameError, TaskPhase, TaskState};

#[test]
fn every_name_parses_back() {
    for state in TaskState::ALL {
        assert_eq!(state.to_string().parse::<TaskState>(), Ok(state));
    }
    for phase in TaskPhase::ALL {
        assert_eq!(phase.as_str().parse::<TaskPhase>(), Ok(phase));
    }
    for reason in FailureReason::ALL {
        assert_eq!(FailureReason::from_str(reason.as_str()), Ok(reason));
    }
}

#[test]
fn an_unknown_name_says_what_was_expected() {
    let e: ParseNameError = "Failed".parse::<TaskState>().unwrap_err();
    let text = e.to_string();
    assert!(text.contains("\"Failed\""), "{text}");
    assert!(
        text.contains("working, success, failed, not_found"),
        "{text}"
    );
    assert!("revoked".parse::<TaskPhase>().is_err());
    assert!("".parse::<FailureReason>().is_err());
    // A long input, from a request say, is shortened in the message.
    let long = "x".repeat(10_000);
    assert!(long.parse::<TaskState>().unwrap_err().to_string().len() < 200);
    // An error that works with `?`.
    fn needs_error<E: std::error::Error + Send + Sync + 'static>(_: E) {}
    needs_error(e);
}

#[cfg(feature = "serde")]
mod serde_feature {
    use std::time::{Duration, UNIX_EPOCH};

    use async_tasks_recorder::{
        AsyncTasksRecorder, FailureReason, Kept, Settled, StateCounts, TaskPhase, TaskState,
        TaskStatus, Transition,
    };
    use serde_json::json;

    fn round_trip<T>(value: &T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let text = serde_json::to_string(value).expect("serializes");
        serde_json::from_str(&text).expect("deserializes")
    }

    #[test]
    fn enums_use_their_display_names() {
        assert_eq!(
            serde_json::to_value(TaskState::NotFound).unwrap(),
            json!("not_found")
        );
        assert_eq!(
            serde_json::to_value(TaskPhase::Revoking).unwrap(),
            json!("revoking")
        );
        assert_eq!(
            serde_json::to_value(FailureReason::WorkerLost).unwrap(),
            json!("worker_lost")
        );
        assert_eq!(
            serde_json::from_value::<FailureReason>(json!("timed_out")).unwrap(),
            FailureReason::TimedOut
        );
        assert!(serde_json::from_value::<TaskState>(json!("Working")).is_err());
    }

    #[tokio::test]
    async fn values_from_a_recorder_round_trip() {
        let rec: AsyncTasksRecorder<String> =
            AsyncTasksRecorder::builder().track_details(true).build();
        let mut events = rec.subscribe();
        let launched = rec
            .launch_block("a".to_string(), async { Err::<(), _>("no") })
            .await;
        assert!(launched.is_ok(), "launched");
        let status: TaskStatus = rec.status("a").await;
        assert!(status.since.is_some() && status.started_at.is_some());
        let back = round_trip(&status);
        assert_eq!(back.phase, TaskPhase::Failed);
        assert_eq!(back.last_failure, Some(FailureReason::Error));
        assert_eq!(back.attempts, Some(1));
        assert_eq!(back.started_at, status.started_at);
        assert_eq!(back.since, None, "an Instant is not carried");
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(json["phase"], "failed");
        assert_eq!(json["last_failure"], "error");
        assert!(json.get("since").is_none(), "{json}");
        let started = Duration::from_secs(json["started_at"]["secs_since_epoch"].as_u64().unwrap());
        assert!(UNIX_EPOCH + started <= std::time::SystemTime::now());

        let settled: Settled = rec.wait("a").await;
        assert_eq!(round_trip(&settled), settled);
        let counts: StateCounts = rec.counts().await;
        assert_eq!(round_trip(&counts), counts);
        assert_eq!(serde_json::to_value(counts).unwrap()["failed"], 1);
        let first = events.next().await.unwrap().unwrap();
        let t: Transition<String> = round_trip(&first);
        assert_eq!(t, first);
        assert_eq!(serde_json::to_value(&first).unwrap()["to"], "working");
    }

    #[tokio::test]
    async fn kept_values_serialize_by_kind() {
        let rec: AsyncTasksRecorder<u32> = AsyncTasksRecorder::new();
        let launched = rec
            .launch_kept(1, async { Err::<(), _>("disk full") }, Default::default())
            .await;
        let Ok(handle) = launched else {
            panic!("refused")
        };
        assert!(handle.await.is_err());
        let status = rec.status(&1).await;
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["kept"], json!({ "message": "disk full" }));
        assert_eq!(round_trip(&status).kept, status.kept);
        for kept in [
            Kept::Output("s3://b/1".into()),
            Kept::TooLarge { len: 9, limit: 8 },
        ] {
            assert_eq!(round_trip(&kept), kept);
        }
        assert_eq!(
            serde_json::to_value(Kept::TooLarge { len: 9, limit: 8 }).unwrap(),
            json!({ "too_large": { "len": 9, "limit": 8 } })
        );
    }
}
