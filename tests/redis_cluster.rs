//! The Redis store on a Redis Cluster of three primaries that the tests start on
//! loopback ports: the semantic suite (`tests/support/semantic_cases.rs`, every rule,
//! each in a namespace of its own), and what a cluster adds: a namespace's slot groups
//! spread over every node while each group's keys stay in one slot, counts and
//! listings covering every node, transitions made on any node heard by every
//! recorder, and a recorder found through one seed node.
#![cfg(feature = "redis")]

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/redis_server.rs"]
mod redis_server;
#[macro_use]
#[path = "support/semantic_cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{TaskPhase, TaskState};
use backend::Place;
use common::bounded;
use redis_cluster::RedisCluster;

/// A guard against a hang of one rule; none comes near it.
const RULE_GUARD: Duration = Duration::from_secs(60);

/// Defines `run_every_rule`, which runs each rule on a fresh namespace of `cluster`.
macro_rules! on_the_cluster {
    ($($name:ident),* $(,)?) => {
        async fn run_every_rule(cluster: &Arc<RedisCluster>) -> usize {
            let mut ran = 0;
            $(
                ran += 1;
                let place = Place::new(cluster.urls(), true, &format!("rule{ran}"), cluster.clone());
                let rule = cases::$name(place.recorder().await);
                if tokio::time::timeout(RULE_GUARD, rule).await.is_err() {
                    panic!("{} hung on the cluster", stringify!($name));
                }
            )*
            ran
        }
    };
}

semantic_cases!(on_the_cluster);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_semantic_suite_passes_on_a_cluster() {
    let cluster = Arc::new(RedisCluster::start(3));
    let ran = run_every_rule(&cluster).await;
    assert!(ran >= 13, "{ran} rules");
}

async fn on(urls: Vec<String>, namespace: &str) -> RedisRecorder<u64> {
    bounded(
        "build",
        RedisRecorder::cluster_builder(urls)
            .namespace(namespace)
            .build(),
    )
    .await
    .expect("the recorder builds on the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_spans_every_node_and_each_group_stays_in_one_slot() {
    let cluster = RedisCluster::start(3);
    let a = on(cluster.urls(), "spread").await;
    // Found through one seed node: the client learns the others from it.
    let seed = vec![cluster.urls()[2].clone()];
    let b = on(seed, "spread").await;

    let mut events = b.subscribe();
    const IDS: u64 = 200;
    for id in 0..IDS {
        let ok = id % 4 != 0;
        a.launch_block(id, async move {
            if ok {
                Ok(())
            } else {
                Err(())
            }
        })
        .await
        .expect("launch");
    }
    // Every transition, made on whichever primary holds the id, reached B's one
    // subscription.
    let mut ended = BTreeSet::new();
    while ended.len() < IDS as usize {
        let event = bounded("event", events.next())
            .await
            .expect("open")
            .expect("nothing missed");
        if event.from == TaskPhase::Working {
            ended.insert(event.id);
        }
    }

    let counts = b.counts().await.expect("counts");
    assert_eq!(
        (counts.success, counts.failed, counts.working),
        (150, 50, 0),
        "{counts:?}"
    );
    let mut failed = b.ids_in_state(TaskState::Failed).await.expect("listing");
    failed.sort_unstable();
    assert_eq!(failed, (0..IDS).step_by(4).collect::<Vec<_>>());
    assert_eq!(
        b.ids_in_state(TaskState::Success)
            .await
            .expect("listing")
            .len(),
        150
    );

    // Every node holds some of the namespace's keys, and each slot group's keys
    // (tagged `{spread.<g>}`) are in one slot.
    let mut slots_of_group: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in cluster.nodes() {
        let keys = node.cli(&["KEYS", "atr:{spread.*"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        assert!(
            !keys.is_empty(),
            "node {} holds none of the namespace",
            node.port()
        );
        for key in keys {
            let tag = &key[key.find('{').unwrap()..=key.find('}').unwrap()];
            let slot = node.cli(&["CLUSTER", "KEYSLOT", key]).trim().to_string();
            slots_of_group
                .entry(tag.to_string())
                .or_default()
                .insert(slot);
        }
    }
    assert!(slots_of_group.len() > 3, "{slots_of_group:?}");
    for (tag, slots) in &slots_of_group {
        assert_eq!(slots.len(), 1, "group {tag} spans slots {slots:?}");
    }

    // A waiter on B wakes for an id that A runs, whichever node holds it.
    for id in [1000u64, 1001, 1002, 1003] {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        a.launch(id, async move { released.await.map_err(drop) })
            .await
            .expect("launch");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait(&id).await }
        });
        assert_eq!(
            b.query_task_state(&id).await.expect("query"),
            TaskState::Working
        );
        release.send(()).expect("the task waits");
        let settled = bounded("wait", waiter)
            .await
            .expect("the waiter")
            .expect("read");
        assert_eq!(settled.state(), TaskState::Success);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_moves_to_another_node_when_its_node_dies() {
    // The slots of the dead node are down, the others keep being served.
    let mut cluster = RedisCluster::start_with(3, &["--cluster-require-full-coverage", "no"]);
    let urls = cluster.urls();
    // B subscribes through the first node it is given; A never talks to it.
    let b = on(urls.clone(), "moved").await;
    let a = on(urls[1..].to_vec(), "moved").await;
    let mut events = b.subscribe();
    cluster.node_mut(0).kill9();
    // B learns that its subscription dropped (and came back on another node).
    match bounded("the subscription's loss", events.next()).await {
        Some(Err(missed)) => assert_eq!(missed.0, 0, "{missed:?}"),
        Some(Ok(event)) => panic!("no transition was made: {event:?}"),
        None => panic!("the stream ended"),
    }
    // Transitions on the live nodes reach B again.
    let mut launched = BTreeSet::new();
    for id in 0..32u64 {
        if a.launch_block(id, async { Ok::<_, ()>(()) }).await.is_ok() {
            launched.insert(id);
        }
    }
    assert!(!launched.is_empty(), "the live nodes serve some ids");
    let mut heard = BTreeSet::new();
    while heard != launched {
        let event = bounded("an event", events.next())
            .await
            .expect("open")
            .expect("nothing missed");
        if event.to == TaskPhase::Success {
            heard.insert(event.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_seed_is_an_error_in_time() {
    let port = redis_server::free_port();
    let dead = vec![format!("redis://127.0.0.1:{port}/")];
    let built = bounded(
        "build",
        RedisRecorder::<u64>::cluster_builder(dead)
            .connect_timeout(Duration::from_secs(2))
            .build(),
    )
    .await;
    assert!(built.is_err(), "no node answers");
    let none = RedisRecorder::<u64>::cluster_builder(Vec::<String>::new())
        .build()
        .await;
    assert!(
        matches!(
            none,
            Err(async_tasks_recorder::StoreError::InvalidConfig(_))
        ),
        "{none:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_on_a_cluster_is_an_auth_error() {
    let cluster = RedisCluster::start_with(3, &["--requirepass", "pw", "--masterauth", "pw"]);
    let with = |password: &str| -> Vec<String> {
        cluster
            .nodes()
            .iter()
            .map(|n| format!("redis://:{password}@127.0.0.1:{}/", n.port()))
            .collect()
    };
    let wrong = bounded(
        "build",
        RedisRecorder::<u64>::cluster_builder(with("wrong")).build(),
    )
    .await;
    let e = wrong.expect_err("a wrong password");
    assert!(
        matches!(e, async_tasks_recorder::StoreError::AuthFailed(_)),
        "{e:?}"
    );
    assert!(!e.is_transient());
    let right = on(with("pw"), "locked").await;
    right
        .launch_block(1, async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    assert_eq!(
        right.query_task_state(&1).await.unwrap(),
        TaskState::Success
    );
}
