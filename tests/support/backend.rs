//! One recorder interface over both stores, so that a suite is written once and run on
//! the in-memory recorder and on the Redis recorder (against a server the test starts).
//!
//! Include it with `#[path = "support/backend.rs"] mod backend;` next to `mod common;`
//! and `#[path = "support/redis_server.rs"] mod redis_server;`. Errors of the Redis store
//! fail the test: the suites check semantics, and a store error is never an answer.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
#[cfg(feature = "redis")]
use std::time::Duration;

#[cfg(feature = "redis")]
use async_tasks_recorder::LaunchError;
use async_tasks_recorder::{
    AsyncTasksRecorder, RevokeFailReason, StateCounts, TaskState, TaskStatus,
};

#[cfg(feature = "redis")]
use async_tasks_recorder::redis::{RedisRecorder, RevokeError};

/// `builder` (of either recorder; their setters share names) with `tune`'s settings.
macro_rules! tuned {
    ($builder:expr, $tune:expr) => {{
        let (mut builder, tune) = ($builder, $tune);
        if let Some(n) = tune.max_kept_len {
            builder = builder.max_kept_len(n);
        }
        if let Some(n) = tune.max_running {
            builder = builder.max_running(n);
        }
        if let Some(every) = tune.progress_interval {
            builder = builder.progress_interval(every);
        }
        if let Some(ttl) = tune.success_ttl {
            builder = builder.success_ttl(ttl);
        }
        if let Some(ttl) = tune.failed_ttl {
            builder = builder.failed_ttl(ttl);
        }
        builder
    }};
}

/// Generates, for every rule `async fn(Kind)`, one test per store on a multi-thread
/// runtime (the Redis one against a server the rule starts through [`Rec`]).
#[macro_export]
macro_rules! each_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name($crate::backend::Kind::Memory).await
                }

                #[cfg(feature = "redis")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name($crate::backend::Kind::Redis).await
                }
            }
        )*
    };
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
}

/// How a revoke was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeRefusal {
    NotSuccess,
    Revoking,
    /// The revoke future returned `Err`.
    Failed,
}

/// A recorder of `u64` ids on one of the stores, with the server it needs.
#[derive(Clone)]
pub enum Rec {
    Memory(AsyncTasksRecorder<u64>),
    #[cfg(feature = "redis")]
    Redis(RedisRecorder<u64>, std::sync::Arc<Place>),
}

/// Where a Redis recorder's records are: a server or a cluster (kept running while
/// any recorder on it lives), and the namespace.
#[cfg(feature = "redis")]
pub struct Place {
    urls: Vec<String>,
    cluster: bool,
    namespace: String,
    _servers: Box<dyn std::any::Any + Send + Sync>,
}

#[cfg(feature = "redis")]
impl Place {
    /// On the server or cluster whose nodes are at `urls`, kept alive by `servers`.
    pub fn new(
        urls: Vec<String>,
        cluster: bool,
        namespace: &str,
        servers: impl std::any::Any + Send + Sync,
    ) -> std::sync::Arc<Place> {
        std::sync::Arc::new(Place {
            urls,
            cluster,
            namespace: namespace.to_string(),
            _servers: Box::new(servers),
        })
    }

    /// A recorder there, as every replica builds it.
    pub async fn recorder(self: &std::sync::Arc<Place>) -> Rec {
        self.recorder_tuned(&Tune::default()).await
    }

    /// A recorder there with `tune`'s settings.
    pub async fn recorder_tuned(self: &std::sync::Arc<Place>, tune: &Tune) -> Rec {
        let builder = if self.cluster {
            RedisRecorder::cluster_builder(self.urls.clone())
        } else {
            RedisRecorder::builder(self.urls[0].clone())
        };
        let builder = builder
            .namespace(&self.namespace)
            .lease(Duration::from_secs(30));
        let builder = tuned!(builder, tune);
        let rec = builder
            .build()
            .await
            .expect("the recorder builds on the test server");
        Rec::Redis(rec, self.clone())
    }
}

/// Settings beyond the defaults, the same on both stores.
#[derive(Debug, Clone, Default)]
pub struct Tune {
    pub max_kept_len: Option<usize>,
    pub max_running: Option<usize>,
    pub progress_interval: Option<std::time::Duration>,
    pub success_ttl: Option<std::time::Duration>,
    pub failed_ttl: Option<std::time::Duration>,
}

impl Rec {
    /// A fresh recorder; on Redis, on a server of its own.
    pub async fn new(kind: Kind) -> Rec {
        Rec::tuned(kind, &Tune::default()).await
    }

    /// A fresh recorder with `tune`'s settings.
    pub async fn tuned(kind: Kind, tune: &Tune) -> Rec {
        match kind {
            Kind::Memory => {
                let builder = tuned!(AsyncTasksRecorder::builder(), tune);
                Rec::Memory(builder.build())
            }
            #[cfg(feature = "redis")]
            Kind::Redis => {
                let server = super::redis_server::RedisServer::start();
                Place::new(vec![server.url()], false, "suite", server)
                    .recorder_tuned(tune)
                    .await
            }
        }
    }

    /// `launch_fenced` of the future `make` builds from the attempt's context; returns
    /// the handle's outcome as `launch_opts` does.
    pub async fn launch_fenced_with<M, F, R, E>(
        &self,
        id: u64,
        make: M,
    ) -> Result<
        impl Future<Output = Result<(), Option<async_tasks_recorder::FailureReason>>>,
        TaskState,
    >
    where
        M: FnOnce(async_tasks_recorder::TaskContext) -> F + Send + 'static,
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let options = async_tasks_recorder::LaunchOptions::new();
        let handle = match self {
            Rec::Memory(r) => r.launch_fenced(id, make, options).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_fenced(id, make, options).await,
        };
        match handle {
            Ok(handle) => Ok(async move { handle.await.map(drop).map_err(|e| Some(e.reason())) }),
            Err(e) => Err(e.state().unwrap_or_else(|| panic!("the store failed: {e}"))),
        }
    }

    /// Every transition from now on.
    pub fn subscribe(&self) -> async_tasks_recorder::TransitionStream<u64> {
        match self {
            Rec::Memory(r) => r.subscribe(),
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.subscribe(),
        }
    }

    /// `launch_with` and `options`: returns the handle's outcome as `Ok(())` or the
    /// failure's reason, once the task ended.
    pub async fn launch_opts<F, R, E>(
        &self,
        id: u64,
        fut: F,
        options: async_tasks_recorder::LaunchOptions,
    ) -> Result<
        impl Future<Output = Result<(), Option<async_tasks_recorder::FailureReason>>>,
        TaskState,
    >
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let handle = match self {
            Rec::Memory(r) => r.launch_with(id, fut, options).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_with(id, fut, options).await,
        };
        match handle {
            Ok(handle) => Ok(async move { handle.await.map(drop).map_err(|e| Some(e.reason())) }),
            Err(e) => Err(e.state().unwrap_or_else(|| panic!("the store failed: {e}"))),
        }
    }

    /// `launch_retrying` with `policy` and `options`: returns the handle's outcome, the
    /// last attempt's output or its failure's reason, once the launch ended.
    pub async fn launch_retrying<M, F, R, E>(
        &self,
        id: u64,
        make: M,
        policy: async_tasks_recorder::RetryPolicy,
        options: async_tasks_recorder::LaunchOptions,
    ) -> Result<impl Future<Output = Result<R, async_tasks_recorder::FailureReason>>, TaskState>
    where
        M: FnMut(async_tasks_recorder::TaskContext) -> F + Send + 'static,
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let handle = match self {
            Rec::Memory(r) => r.launch_retrying(id, make, policy, options).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_retrying(id, make, policy, options).await,
        };
        match handle {
            Ok(handle) => Ok(async move { handle.await.map_err(|e| e.reason()) }),
            Err(e) => Err(e.state().unwrap_or_else(|| panic!("the store failed: {e}"))),
        }
    }

    /// `launch_kept`: the task's end is kept with its record. Returns the handle's
    /// outcome as `Ok(())` or the error's text, once the task ended.
    pub async fn launch_kept<F, R, E>(
        &self,
        id: u64,
        fut: F,
    ) -> Result<impl Future<Output = Result<(), String>>, TaskState>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: async_tasks_recorder::KeptOutput + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let options = async_tasks_recorder::LaunchOptions::new();
        let handle = match self {
            Rec::Memory(r) => r.launch_kept(id, fut, options).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_kept(id, fut, options).await,
        };
        match handle {
            Ok(handle) => Ok(async move { handle.await.map(drop).map_err(|e| e.to_string()) }),
            Err(e) => Err(e.state().unwrap_or_else(|| panic!("the store failed: {e}"))),
        }
    }

    /// Another recorder on the same records (on Redis: a second connection, as another
    /// replica would have).
    pub async fn replica(&self) -> Rec {
        match self {
            Rec::Memory(r) => Rec::Memory(r.clone()),
            #[cfg(feature = "redis")]
            Rec::Redis(_, place) => place.recorder().await,
        }
    }

    pub async fn launch<F, R, E>(&self, id: u64, fut: F) -> Result<(), TaskState>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.launch_returning(id, fut).await.map_err(|(s, _)| s)
    }

    /// `launch`, handing a refused future back as the recorders do.
    pub async fn launch_returning<F, R, E>(&self, id: u64, fut: F) -> Result<(), (TaskState, F)>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Rec::Memory(r) => r.launch(id, fut).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch(id, fut).await.map_err(refused_with),
        }
    }

    pub async fn launch_block<F, R, E>(&self, id: u64, fut: F) -> Result<(), TaskState>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Rec::Memory(r) => r.launch_block(id, fut).await.map_err(|(s, _)| s),
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_block(id, fut).await.map_err(refused),
        }
    }

    pub async fn revoke_task<F, R, E>(&self, id: u64, fut: F) -> Result<(), RevokeRefusal>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Rec::Memory(r) => r.revoke_task(id, fut).await.map_err(|e| match e {
                RevokeFailReason::NotSuccess(_) => RevokeRefusal::NotSuccess,
                RevokeFailReason::Revoking(_) => RevokeRefusal::Revoking,
            }),
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.revoke_task(id, fut).await.map_err(revoke_refused),
        }
    }

    pub async fn revoke_task_block<F, R, E>(&self, id: u64, fut: F) -> Result<R, RevokeRefusal>
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Rec::Memory(r) => r.revoke_task_block(id, fut).await.map_err(|e| match e {
                RevokeFailReason::NotSuccess(_) => RevokeRefusal::NotSuccess,
                RevokeFailReason::Revoking(_) => RevokeRefusal::Revoking,
                RevokeFailReason::RevokeTaskError(_) => RevokeRefusal::Failed,
            }),
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.revoke_task_block(id, fut).await.map_err(revoke_refused),
        }
    }

    /// A fenced launch whose task returns its own token and attempt; waits for it.
    pub async fn fenced_attempt(&self, id: u64) -> Result<(u64, u32), TaskState> {
        let make = |ctx: async_tasks_recorder::TaskContext| async move {
            Ok::<_, ()>((ctx.token(), ctx.attempt()))
        };
        let options = async_tasks_recorder::LaunchOptions::new();
        let handle = match self {
            Rec::Memory(r) => r.launch_fenced(id, make, options).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.launch_fenced(id, make, options).await,
        };
        match handle {
            Ok(handle) => Ok(handle.await.expect("the fenced task succeeds")),
            Err(e) => Err(e.state().unwrap_or_else(|| panic!("the store failed: {e}"))),
        }
    }

    pub async fn query(&self, id: u64) -> TaskState {
        match self {
            Rec::Memory(r) => r.query_task_state(&id).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.query_task_state(&id).await.expect("query"),
        }
    }

    pub async fn quick(&self, id: u64) -> TaskState {
        match self {
            Rec::Memory(r) => r.query_task_state_quick(&id).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.query_task_state_quick(&id).await.expect("quick query"),
        }
    }

    pub async fn status(&self, id: u64) -> TaskStatus {
        match self {
            Rec::Memory(r) => r.status(&id).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.status(&id).await.expect("status"),
        }
    }

    pub async fn counts(&self) -> StateCounts {
        match self {
            Rec::Memory(r) => r.counts().await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.counts().await.expect("counts"),
        }
    }

    pub async fn wait(&self, id: u64) -> async_tasks_recorder::Settled {
        match self {
            Rec::Memory(r) => r.wait(&id).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.wait(&id).await.expect("wait"),
        }
    }

    pub async fn cancel(&self, id: u64) -> bool {
        match self {
            Rec::Memory(r) => r.cancel(&id).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.cancel(&id).await.expect("cancel"),
        }
    }

    pub async fn ids_in_state(&self, state: TaskState) -> Vec<u64> {
        match self {
            Rec::Memory(r) => r.ids_in_state(state).await,
            #[cfg(feature = "redis")]
            Rec::Redis(r, _) => r.ids_in_state(state).await.expect("listing"),
        }
    }
}

#[cfg(feature = "redis")]
fn refused<F>(e: LaunchError<F>) -> TaskState {
    refused_with(e).0
}

#[cfg(feature = "redis")]
fn refused_with<F>(e: LaunchError<F>) -> (TaskState, F) {
    match e {
        LaunchError::Refused(state, f) => (state, f),
        other => panic!("the Redis store failed: {other}"),
    }
}

impl Rec {
    /// Waits, under the hang guard of `common`, until `id` reads `want`.
    pub async fn until_state(&self, id: u64, want: TaskState) {
        super::common::bounded(&format!("{id} to become {want:?}"), async {
            while self.query(id).await != want {
                tokio::task::yield_now().await;
            }
        })
        .await
    }

    /// Which store this is, for messages.
    pub fn kind(&self) -> Kind {
        match self {
            Rec::Memory(_) => Kind::Memory,
            #[cfg(feature = "redis")]
            Rec::Redis(..) => Kind::Redis,
        }
    }
}

#[cfg(feature = "redis")]
fn revoke_refused<F, E>(e: RevokeError<F, E>) -> RevokeRefusal {
    match e {
        RevokeError::NotSuccess(_) => RevokeRefusal::NotSuccess,
        RevokeError::Revoking(_) => RevokeRefusal::Revoking,
        RevokeError::RevokeTaskError(_) => RevokeRefusal::Failed,
        RevokeError::Store(e, _) => panic!("the Redis store failed: {e}"),
        RevokeError::Lost => panic!("a revoke lost its lease in a test with 30 s leases"),
        _ => panic!("an unknown revoke error"),
    }
}
