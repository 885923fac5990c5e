//! What both bench binaries share: the competitors behind one trait, the id scheme,
//! the runtime, the size switch and a few drivers.
//!
//! Every competitor is driven through the same [`Recorder`] methods, so the workloads
//! are written once and measure the same shape of work for each of them.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use scc::hash_map::Entry;

/// The fast hasher our crate uses, for the hand-written maps (see BENCHMARKS.md).
pub(crate) type Fast = foldhash::fast::RandomState;

/// A task state as every competitor reports it, one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum St {
    Working,
    Success,
    Failed,
    NotFound,
    /// Only `minimal_map` stores this one (its revoke in progress); queries of the
    /// crates never return it.
    Revoking,
}

impl St {
    /// The final state of a task that returned `Ok` (`ok`) or `Err`.
    pub(crate) fn finished(ok: bool) -> St {
        if ok {
            St::Success
        } else {
            St::Failed
        }
    }

    /// The state a competitor that keeps `St as u8` reports for a stored byte: a
    /// revoke in progress still reads `Success`.
    pub(crate) fn from_byte(b: u8) -> St {
        match b {
            b if b == St::Working as u8 => St::Working,
            b if b == St::Success as u8 || b == St::Revoking as u8 => St::Success,
            b if b == St::Failed as u8 => St::Failed,
            _ => St::NotFound,
        }
    }
}

/// Moves the state byte `cell` from `from` to `to`; `false` if it held something else.
fn swap_state(cell: &AtomicU8, from: St, to: St) -> bool {
    cell.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// `true` when the bench runs with tiny sizes: `ATR_BENCH_SMOKE=1`, or criterion's test
/// mode (`cargo test --benches`, `cargo bench -- --test`), in which every benchmark runs
/// once and full sizes in a debug build would only cost time.
pub(crate) fn smoke() -> bool {
    let env = std::env::var("ATR_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    env || !bench_mode
}

/// `full` in a real run, `full / 1000` (at least 10) in smoke mode.
pub(crate) fn size(full: usize) -> usize {
    if smoke() {
        (full / 1000).max(10)
    } else {
        full
    }
}

/// The runtime of every workload: Tokio multi-thread with two workers.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("building the Tokio runtime")
}

/// Runs `fut` as a task on the runtime's workers (not on the calling thread, which only
/// waits), so that all the work happens on the two workers.
pub(crate) fn on_workers<T, F>(rt: &tokio::runtime::Runtime, fut: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("bench task panicked") })
}

/// The id of the `i`-th record: a bijective scramble of `i` (the splitmix64 finaliser),
/// so ids look like the random identifiers a service keeps, while `id(0..n)` are `n`
/// distinct ids and `id(n..2n)` are `n` others.
pub(crate) const fn id(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (xorshift64*) for the query arrays.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(id(seed) | 1)
    }

    /// Uniform enough in `0..bound` for picking ids (`bound` far below 2^32).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % bound
    }
}

/// Where the reports that criterion cannot make are written: `criterion/` in the
/// target directory, which holds this program at `<target>/<profile>/deps/<name>`
/// (`CARGO_TARGET_DIR`, else the workspace's `target/`, when that path is unusual).
pub(crate) fn report_dir() -> PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or(from_exe)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Writes `text` to `target/criterion/<name>` (best effort: a read-only target dir only
/// costs the file, the table is printed anyway).
pub(crate) fn write_report(name: &str, text: &str) {
    let dir = report_dir();
    let path = dir.join(name);
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        Ok(()) => println!("(written to {})", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

/// Anything that answers "what is the state of this id" (the recorders, and the plain
/// map that serves as the read-side reference).
pub(crate) trait Query: Clone + Send + Sync + 'static {
    /// The name in the reports.
    const NAME: &'static str;

    /// The state of `id`.
    fn query(&self, id: u64) -> impl Future<Output = St> + Send + '_;
}

/// Queries every id of `arrays` on `rec`, one task per array, and returns how many
/// answers were `expect`: the timed part of `query_hit` and `query_miss`. Must run
/// on the runtime's workers.
pub(crate) async fn query_arrays<Q: Query>(
    rec: &Q,
    arrays: &[Arc<Vec<u64>>; 2],
    expect: St,
) -> usize {
    let tasks = arrays.clone().map(|ids| {
        let rec = rec.clone();
        tokio::spawn(async move {
            let mut matched = 0usize;
            for &id in ids.iter() {
                if rec.query(id).await == expect {
                    matched += 1;
                }
            }
            matched
        })
    });
    let mut matched = 0;
    for task in tasks {
        matched += task.await.expect("query task panicked");
    }
    matched
}

/// What every workload needs from a competitor. The futures are `Send` so the drivers
/// can spawn them; `task` futures are the benchmark's own trivial jobs.
pub(crate) trait Recorder: Query {
    fn create() -> Self;

    /// Launches `task` under `id` (spawned); `true` if it was accepted.
    fn launch<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static;

    /// Runs `task` under `id` in the caller; `true` if it was accepted.
    fn launch_block<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static;

    /// Revokes the success of `id` by running `task` in the caller; `true` if the
    /// revoke ran and returned `Ok` (the id is then `NotFound`).
    fn revoke_block<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static;
}

// ---------------------------------------------------------------------------------
// ours
// ---------------------------------------------------------------------------------

/// This crate (3.0.0).
#[derive(Debug, Clone)]
pub(crate) struct Ours(pub(crate) async_tasks_recorder::AsyncTasksRecorder<u64>);

fn from_ours(s: async_tasks_recorder::TaskState) -> St {
    use async_tasks_recorder::TaskState as T;
    match s {
        T::Working => St::Working,
        T::Success => St::Success,
        T::Failed => St::Failed,
        T::NotFound => St::NotFound,
    }
}

impl Query for Ours {
    const NAME: &'static str = "ours";

    async fn query(&self, id: u64) -> St {
        from_ours(self.0.query_task_state(&id).await)
    }
}

/// `Recorder` for a crate with the 2.x entry points (`launch`, `launch_block`,
/// `revoke_task_block` with the 2.x signatures): this crate and 2.0.2 alike.
macro_rules! recorder_with_2x_api {
    ($name:ident, $($recorder:ident)::+) => {
        impl Recorder for $name {
            fn create() -> Self {
                $name($($recorder)::+::new())
            }

            async fn launch<F>(&self, id: u64, task: F) -> bool
            where
                F: Future<Output = Result<(), ()>> + Send + 'static,
            {
                self.0.launch(id, task).await.is_ok()
            }

            async fn launch_block<F>(&self, id: u64, task: F) -> bool
            where
                F: Future<Output = Result<(), ()>> + Send + 'static,
            {
                self.0.launch_block(id, task).await.is_ok()
            }

            async fn revoke_block<F>(&self, id: u64, task: F) -> bool
            where
                F: Future<Output = Result<(), ()>> + Send + 'static,
            {
                self.0.revoke_task_block(id, task).await.is_ok()
            }
        }
    };
}

recorder_with_2x_api!(Ours, async_tasks_recorder::AsyncTasksRecorder);

// ---------------------------------------------------------------------------------
// async_tasks_recorder 2.0.2
// ---------------------------------------------------------------------------------

/// The previous major release, `async_tasks_recorder = "=2.0.2"`.
#[derive(Debug, Clone)]
pub(crate) struct V2(pub(crate) old_recorder::AsyncTasksRecorder<u64>);

impl Query for V2 {
    const NAME: &'static str = "v2_0_2";

    async fn query(&self, id: u64) -> St {
        use old_recorder::TaskState as T;
        match self.0.query_task_state(&id).await {
            T::Working => St::Working,
            T::Success => St::Success,
            T::Failed => St::Failed,
            T::NotFound => St::NotFound,
        }
    }
}

recorder_with_2x_api!(V2, old_recorder::AsyncTasksRecorder);

// ---------------------------------------------------------------------------------
// async_tasks_state_map 1.0.1
// ---------------------------------------------------------------------------------

/// `async_tasks_state_map = "=1.0.1"`: one `scc::HashMap<K, TaskState>`.
#[derive(Debug, Clone)]
pub(crate) struct StateMap(pub(crate) async_tasks_state_map::AsyncTasksRecorder<u64>);

impl Query for StateMap {
    const NAME: &'static str = "state_map";

    async fn query(&self, id: u64) -> St {
        use async_tasks_state_map::TaskState as T;
        match self.0.query_task_state(&id).await {
            T::Working => St::Working,
            // Its `Revoking` is a success being revoked, as in the other crates.
            T::Success | T::Revoking => St::Success,
            T::Failed => St::Failed,
            T::NotFound => St::NotFound,
        }
    }
}

impl Recorder for StateMap {
    fn create() -> Self {
        StateMap(async_tasks_state_map::AsyncTasksRecorder::new())
    }

    async fn launch<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.0.launch(id, task).await.is_ok()
    }

    async fn launch_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.0.launch_block(id, task).await.is_ok()
    }

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        matches!(self.0.revoke_task_block(&id, task).await, Ok(Ok(())))
    }
}

// ---------------------------------------------------------------------------------
// minimal_map: the least a recorder can do with one concurrent map
// ---------------------------------------------------------------------------------

/// One `scc::HashMap<u64, St>` (foldhash): launch inserts `Working` if the id is absent
/// or `Failed`, spawns, and the task writes its final state; a revoke flips `Success`
/// to `Revoking`, runs, and removes the entry. No drop guards, no panic handling.
#[derive(Debug, Clone)]
pub(crate) struct MinimalMap(pub(crate) Arc<scc::HashMap<u64, St, Fast>>);

impl MinimalMap {
    /// Claims `id` for a run: `true` if it was absent or `Failed` and is now `Working`.
    async fn claim(&self, id: u64) -> bool {
        match self.0.entry_async(id).await {
            Entry::Occupied(mut entry) => {
                if *entry.get() == St::Failed {
                    *entry.get_mut() = St::Working;
                    true
                } else {
                    false
                }
            }
            Entry::Vacant(entry) => {
                entry.insert_entry(St::Working);
                true
            }
        }
    }

    async fn finish(map: &scc::HashMap<u64, St, Fast>, id: u64, ok: bool) {
        let state = St::finished(ok);
        map.update_async(&id, |_, v| *v = state).await;
    }
}

impl Query for MinimalMap {
    const NAME: &'static str = "minimal_map";

    async fn query(&self, id: u64) -> St {
        match self.0.read_async(&id, |_, v| *v).await {
            Some(St::Revoking) => St::Success,
            Some(state) => state,
            None => St::NotFound,
        }
    }
}

impl Recorder for MinimalMap {
    fn create() -> Self {
        MinimalMap(Arc::new(scc::HashMap::with_hasher(Fast::default())))
    }

    async fn launch<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        if !self.claim(id).await {
            return false;
        }
        let map = self.0.clone();
        tokio::spawn(async move {
            let ok = task.await.is_ok();
            MinimalMap::finish(&map, id, ok).await;
        });
        true
    }

    async fn launch_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        if !self.claim(id).await {
            return false;
        }
        let ok = task.await.is_ok();
        MinimalMap::finish(&self.0, id, ok).await;
        true
    }

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let started = self
            .0
            .update_async(&id, |_, v| {
                let success = *v == St::Success;
                if success {
                    *v = St::Revoking;
                }
                success
            })
            .await
            == Some(true);
        if !started {
            return false;
        }
        if task.await.is_ok() {
            self.0
                .remove_if_async(&id, |v| *v == St::Revoking)
                .await
                .is_some()
        } else {
            self.0.update_async(&id, |_, v| *v = St::Success).await;
            false
        }
    }
}

// ---------------------------------------------------------------------------------
// sharded_map: the cheapest recorder of this shape, the floor of every workload
// ---------------------------------------------------------------------------------

/// Shards of [`ShardedMap`], like ours (a power of two).
const SHARDED_MAP_SHARDS: usize = 64;

/// The least a recorder of our shape can do: 64 shards, each a `std::sync::RwLock` over
/// one `std::collections::HashMap<u64, St>` (foldhash), updated in place. Launch =
/// write-lock the id's shard, insert `Working` if absent or `Failed`, spawn; the task
/// write-locks the shard again and writes `Success`/`Failed`. No drop guards, no panic
/// handling, no cancellation, no waiters, no per-state tables (so no cheap
/// "ids in one state"), one byte of state per record. It measures what recording in
/// a sharded map costs at the least, whatever else a design does: every target ratio
/// of BENCHMARKS.md is to it.
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap(Arc<Sharded<std::collections::HashMap<u64, St, Fast>>>);

/// `SHARDED_MAP_SHARDS` locked shards of `T`, picked by the id's foldhash.
#[derive(Debug)]
pub(crate) struct Sharded<T> {
    hasher: Fast,
    shards: Vec<Padded<RwLock<T>>>,
}

impl<T: Default> Sharded<T> {
    fn new() -> Self {
        Sharded {
            hasher: Fast::default(),
            shards: (0..SHARDED_MAP_SHARDS)
                .map(|_| Padded(RwLock::new(T::default())))
                .collect(),
        }
    }

    fn shard(&self, id: u64) -> &RwLock<T> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(id);
        &self.shards[(h >> 40) as usize & (SHARDED_MAP_SHARDS - 1)].0
    }
}

/// One shard per 128 bytes, as ours.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(T);

/// The `launch` and `launch_block` of a sharded floor, from its `claim` (the id becomes
/// `Working`, if it may) and `finish`. A macro rather than a generic helper, so that
/// each floor's futures are compiled as if written out: a helper function changes how
/// they are inlined, and with it what the floor costs.
macro_rules! launches_by_claim {
    () => {
        async fn launch<F>(&self, id: u64, task: F) -> bool
        where
            F: Future<Output = Result<(), ()>> + Send + 'static,
        {
            if !self.claim(id) {
                return false;
            }
            let map = self.clone();
            tokio::spawn(async move {
                let ok = task.await.is_ok();
                map.finish(id, ok);
            });
            true
        }

        async fn launch_block<F>(&self, id: u64, task: F) -> bool
        where
            F: Future<Output = Result<(), ()>> + Send + 'static,
        {
            if !self.claim(id) {
                return false;
            }
            let ok = task.await.is_ok();
            self.finish(id, ok);
            true
        }
    };
}

impl ShardedMap {
    fn shard(&self, id: u64) -> &RwLock<std::collections::HashMap<u64, St, Fast>> {
        self.0.shard(id)
    }

    fn claim(&self, id: u64) -> bool {
        let mut shard = self.shard(id).write().unwrap();
        match shard.get_mut(&id) {
            Some(state) if *state == St::Failed => {
                *state = St::Working;
                true
            }
            Some(_) => false,
            None => {
                shard.insert(id, St::Working);
                true
            }
        }
    }

    fn finish(&self, id: u64, ok: bool) {
        let state = St::finished(ok);
        if let Some(v) = self.shard(id).write().unwrap().get_mut(&id) {
            *v = state;
        }
    }
}

impl Query for ShardedMap {
    const NAME: &'static str = "sharded_map";

    async fn query(&self, id: u64) -> St {
        match self.shard(id).read().unwrap().get(&id) {
            Some(St::Revoking) => St::Success,
            Some(state) => *state,
            None => St::NotFound,
        }
    }
}

impl Recorder for ShardedMap {
    fn create() -> Self {
        ShardedMap(Arc::new(Sharded::new()))
    }

    launches_by_claim!();

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let started = {
            let mut shard = self.shard(id).write().unwrap();
            match shard.get_mut(&id) {
                Some(v) if *v == St::Success => {
                    *v = St::Revoking;
                    true
                }
                _ => false,
            }
        };
        if !started {
            return false;
        }
        let ok = task.await.is_ok();
        let mut shard = self.shard(id).write().unwrap();
        if ok {
            shard.remove(&id);
        } else if let Some(v) = shard.get_mut(&id) {
            *v = St::Success;
        }
        ok
    }
}

// ---------------------------------------------------------------------------------
// phase_tables: the sharded floor with one table per phase, as ours
// ---------------------------------------------------------------------------------

/// One shard of a [`PhaseTables`]: a set of ids per phase.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    working: HashSet<u64, Fast>,
    success: HashSet<u64, Fast>,
    failed: HashSet<u64, Fast>,
    revoking: HashSet<u64, Fast>,
}

impl Phases {
    fn state(&self, id: u64) -> St {
        if self.success.contains(&id) || self.revoking.contains(&id) {
            St::Success
        } else if self.failed.contains(&id) {
            St::Failed
        } else if self.working.contains(&id) {
            St::Working
        } else {
            St::NotFound
        }
    }
}

/// [`ShardedMap`] with ours' layout instead of a state byte: each shard holds one
/// set per phase, and a transition moves the id from one set to another under the
/// shard's write lock (a remove and an insert where the floor writes a byte in
/// place); a miss looks in every set. No guards, no waiters, no tokens. It prices the
/// per-phase index alone: what `ours/phase_tables` leaves is the rest of the design.
#[derive(Debug, Clone)]
pub(crate) struct PhaseTables(Arc<Sharded<Phases>>);

impl PhaseTables {
    fn shard(&self, id: u64) -> &RwLock<Phases> {
        self.0.shard(id)
    }

    fn claim(&self, id: u64) -> bool {
        let mut shard = self.shard(id).write().unwrap();
        match shard.state(id) {
            St::NotFound => {}
            St::Failed => {
                shard.failed.remove(&id);
            }
            _ => return false,
        }
        shard.working.insert(id);
        true
    }

    fn finish(&self, id: u64, ok: bool) {
        let mut shard = self.shard(id).write().unwrap();
        if shard.working.remove(&id) {
            if ok {
                shard.success.insert(id);
            } else {
                shard.failed.insert(id);
            }
        }
    }
}

impl Query for PhaseTables {
    const NAME: &'static str = "phase_tables";

    async fn query(&self, id: u64) -> St {
        self.shard(id).read().unwrap().state(id)
    }
}

impl Recorder for PhaseTables {
    fn create() -> Self {
        PhaseTables(Arc::new(Sharded::new()))
    }

    launches_by_claim!();

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let started = {
            let mut shard = self.shard(id).write().unwrap();
            shard.success.remove(&id) && shard.revoking.insert(id)
        };
        if !started {
            return false;
        }
        let ok = task.await.is_ok();
        let mut shard = self.shard(id).write().unwrap();
        shard.revoking.remove(&id);
        if !ok {
            shard.success.insert(id);
        }
        ok
    }
}

// ---------------------------------------------------------------------------------
// cell_map: a sharded map whose finish takes no lock, as a second floor
// ---------------------------------------------------------------------------------

/// A shard of a [`CellMap`]: id to the record's own atomic state byte.
type CellTable = std::collections::HashMap<u64, Arc<AtomicU8>, Fast>;

/// [`ShardedMap`] with the finish moved off the map: each record is its own
/// `Arc<AtomicU8>`, which the launch inserts under the shard's write lock and the task
/// keeps, so the finish is one atomic store with no lock, no hashing and no probe; a
/// query read-locks the shard, probes and loads the byte. It pays an allocation per
/// record (more memory than the targets allow), so it is not a design we could ship;
/// it tells whether taking the map out of the finish would make a recorder reach the
/// lifecycle targets.
#[derive(Debug, Clone)]
pub(crate) struct CellMap(Arc<Sharded<CellTable>>);

impl CellMap {
    fn shard(&self, id: u64) -> &RwLock<CellTable> {
        self.0.shard(id)
    }

    /// The record of `id` if it was absent or `Failed` (now `Working`).
    fn claim(&self, id: u64) -> Option<Arc<AtomicU8>> {
        let mut shard = self.shard(id).write().unwrap();
        match shard.get(&id) {
            Some(cell) => swap_state(cell, St::Failed, St::Working).then(|| cell.clone()),
            None => {
                let cell = Arc::new(AtomicU8::new(St::Working as u8));
                shard.insert(id, cell.clone());
                Some(cell)
            }
        }
    }
}

fn store_final(cell: &AtomicU8, ok: bool) {
    cell.store(St::finished(ok) as u8, Ordering::Release);
}

impl Query for CellMap {
    const NAME: &'static str = "cell_map";

    async fn query(&self, id: u64) -> St {
        let shard = self.shard(id).read().unwrap();
        shard.get(&id).map_or(St::NotFound, |cell| {
            St::from_byte(cell.load(Ordering::Acquire))
        })
    }
}

impl Recorder for CellMap {
    fn create() -> Self {
        CellMap(Arc::new(Sharded::new()))
    }

    async fn launch<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let Some(cell) = self.claim(id) else {
            return false;
        };
        tokio::spawn(async move { store_final(&cell, task.await.is_ok()) });
        true
    }

    async fn launch_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let Some(cell) = self.claim(id) else {
            return false;
        };
        store_final(&cell, task.await.is_ok());
        true
    }

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let Some(cell) = self.shard(id).read().unwrap().get(&id).cloned() else {
            return false;
        };
        if !swap_state(&cell, St::Success, St::Revoking) {
            return false;
        }
        let ok = task.await.is_ok();
        if ok {
            self.shard(id).write().unwrap().remove(&id);
        } else {
            cell.store(St::Success as u8, Ordering::Release);
        }
        ok
    }
}

// ---------------------------------------------------------------------------------
// byte_slots: the least any recording can do, as a floor under every design
// ---------------------------------------------------------------------------------

/// Slots of [`ByteSlots`]: 2^20 bytes, over five times the lifecycle's 200,000 ids.
const BYTE_SLOTS: usize = 1 << 20;

/// Not a recorder: one byte per slot of a fixed array, the slot picked by the id's low
/// bits (the ids are scrambled, so they spread evenly). Launch stores `Working` in the
/// id's byte and spawns; the task stores `Success`/`Failed`; a query loads the byte.
/// No map, no lock, no deduplication (two ids may share a byte, and a second launch of
/// an id is accepted), no removal. It writes one byte at launch and one at finish, which
/// every recorder must do in some form to answer queries from another task, and
/// nothing else, so its `lifecycle` ratio to `bare_spawn` bounds every design's from
/// above.
#[derive(Debug, Clone)]
pub(crate) struct ByteSlots(Arc<[AtomicU8]>);

impl ByteSlots {
    fn slot(&self, id: u64) -> &AtomicU8 {
        &self.0[id as usize & (BYTE_SLOTS - 1)]
    }

    fn set(&self, id: u64, state: St) {
        self.slot(id).store(state as u8, Ordering::Release);
    }
}

impl Query for ByteSlots {
    const NAME: &'static str = "byte_slots";

    async fn query(&self, id: u64) -> St {
        St::from_byte(self.slot(id).load(Ordering::Acquire))
    }
}

impl Recorder for ByteSlots {
    fn create() -> Self {
        ByteSlots(
            (0..BYTE_SLOTS)
                .map(|_| AtomicU8::new(St::NotFound as u8))
                .collect(),
        )
    }

    async fn launch<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.set(id, St::Working);
        let slots = self.clone();
        tokio::spawn(async move {
            slots.set(id, St::finished(task.await.is_ok()));
        });
        true
    }

    async fn launch_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.set(id, St::Working);
        self.set(id, St::finished(task.await.is_ok()));
        true
    }

    async fn revoke_block<F>(&self, id: u64, task: F) -> bool
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        if !swap_state(self.slot(id), St::Success, St::Revoking) {
            return false;
        }
        let ok = task.await.is_ok();
        self.set(id, if ok { St::NotFound } else { St::Success });
        ok
    }
}

// ---------------------------------------------------------------------------------
// rwlock_map: the read-side reference for query_hit
// ---------------------------------------------------------------------------------

/// `std::sync::RwLock<std::collections::HashMap<u64, u8>>` with foldhash: one lock,
/// shared reads. Only queried (filled directly, never launched).
#[derive(Debug, Clone)]
pub(crate) struct RwLockMap(pub(crate) Arc<RwLock<std::collections::HashMap<u64, u8, Fast>>>);

impl RwLockMap {
    /// A map holding `Success` for `id(0..n)`.
    pub(crate) fn filled(n: usize) -> Self {
        let mut map = std::collections::HashMap::with_hasher(Fast::default());
        for i in 0..n as u64 {
            map.insert(id(i), St::Success as u8);
        }
        RwLockMap(Arc::new(RwLock::new(map)))
    }
}

impl Query for RwLockMap {
    const NAME: &'static str = "rwlock_map";

    async fn query(&self, id: u64) -> St {
        let map = self.0.read().expect("never poisoned");
        match map.get(&id) {
            Some(&v) if v == St::Success as u8 => St::Success,
            Some(&v) if v == St::Failed as u8 => St::Failed,
            Some(_) => St::Working,
            None => St::NotFound,
        }
    }
}

/// The trivial job of the workloads.
pub(crate) async fn ok_job() -> Result<(), ()> {
    Ok(())
}

/// Fills a fresh recorder with `n` records `id(0..n)` through `launch_block` (no
/// spawning), `Failed` where `failed(i)`, `Success` elsewhere.
pub(crate) async fn fill_block<R: Recorder>(n: usize, failed: fn(u64) -> bool) -> R {
    let rec = R::create();
    for i in 0..n as u64 {
        let fail = failed(i);
        let accepted = rec
            .launch_block(id(i), async move {
                if fail {
                    Err(())
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(accepted, "{}: fresh id refused", R::NAME);
    }
    rec
}

/// Launches `id(0..n)` (spawned, trivial `Ok` job) from the calling task, then waits
/// until every one of them reads `Success`, querying each id in turn and yielding while
/// it is not final yet. This is the `lifecycle` workload.
pub(crate) async fn launch_and_wait<R: Recorder>(rec: &R, n: usize) {
    for i in 0..n as u64 {
        if !rec.launch(id(i), ok_job()).await {
            panic!("{}: fresh id refused", R::NAME);
        }
    }
    for i in 0..n as u64 {
        loop {
            match rec.query(id(i)).await {
                St::Success => break,
                St::Working => tokio::task::yield_now().await,
                other => panic!("{}: id {i} ended {other:?}", R::NAME),
            }
        }
    }
}
