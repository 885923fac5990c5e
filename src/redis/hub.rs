//! [`Hub`]: what one process hears from the namespace's channel, and who listens.
//!
//! One task per recorder holds a pub/sub connection subscribed to the namespace's
//! channel. Messages are hints, never the truth: a waiter registers here first, then
//! reads the record, and sleeps only if the record says the id is still running; a
//! message about the id (or a lost and re-established subscription, which wakes every
//! waiter) makes it read again. A waiter also wakes when the lease of the phase it
//! waits for ends, since an expiry sends no message until a script makes the move.
//! So a lost message can delay a waiter by at most one lease, and never lose it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::id::StoredId;
use crate::events::Events;
use crate::state::Phase;
use crate::status::{FailureReason, Settled, Transition};
use crate::sync;

/// The waiters of one id in this process.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    pub(crate) notify: Notify,
    /// How the last few running phases of the id ended, by token, as the channel
    /// told: a waiter whose phase ended and was followed by a relaunch reads its
    /// outcome here. The flag says that the phase kept a value, which the message
    /// does not carry.
    ended: Mutex<Vec<(u64, Settled, bool)>>,
}

impl Waiters {
    /// How the phase of `token` ended, and whether it kept a value (to be read from
    /// the record), if the channel said.
    pub(crate) fn outcome_of(&self, token: u64) -> Option<(Settled, bool)> {
        sync::lock(&self.ended)
            .iter()
            .find(|(t, ..)| *t == token)
            .map(|(_, s, kept)| (s.clone(), *kept))
    }
}

/// A running phase of this process: a task or a revoke that holds a lease.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) token: u64,
    cancel: AtomicBool,
    wake: Notify,
    /// Until when this process may act as the lease's holder: a margin before the
    /// server's lease end, by this host's monotonic clock.
    valid_until: Mutex<Instant>,
    /// Set by `drain`: the cancellation came from a shutdown of this process.
    pub(crate) drained: AtomicBool,
}

impl Running {
    pub(crate) fn new(token: u64, valid_until: Instant) -> Self {
        Running {
            token,
            cancel: AtomicBool::new(false),
            wake: Notify::new(),
            valid_until: Mutex::new(valid_until),
            drained: AtomicBool::new(false),
        }
    }

    pub(crate) fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        // A stored permit: a task that is not waiting yet sees it when it does.
        self.wake.notify_one();
    }

    /// Resolves once a cancellation was requested.
    pub(crate) async fn cancelled(&self) {
        while !self.cancel.load(Ordering::SeqCst) {
            self.wake.notified().await;
        }
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *sync::lock(&self.valid_until)
    }

    /// Moves the end of validity later (never earlier: renewals may answer out of
    /// order).
    pub(crate) fn extend(&self, until: Instant) {
        let mut v = sync::lock(&self.valid_until);
        if until > *v {
            *v = until;
        }
    }
}

/// The waiters of each id, with their number of registrations.
type WaiterMap = HashMap<Vec<u8>, (usize, Arc<Waiters>)>;

/// This process's running phases, by id bytes and token.
type RunningMap = HashMap<(Vec<u8>, u64), Weak<Running>>;

/// What the listener shares with the recorder.
pub(crate) struct Hub<K> {
    /// The waiters of each id, with how many registrations hold them: the entry goes
    /// when the last one is dropped (counted under this lock, so no drop can miss it).
    waiters: Mutex<WaiterMap>,
    /// Woken (all of it) when the subscription was lost and is back: every waiter
    /// reads again.
    pub(crate) resubscribed: Notify,
    running: Mutex<RunningMap>,
    pub(crate) events: Events<K>,
}

impl<K> std::fmt::Debug for Hub<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// A waiter's registration; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registration<'a, K> {
    hub: &'a Hub<K>,
    bytes: Vec<u8>,
    pub(crate) waiters: Arc<Waiters>,
}

impl<K> Drop for Registration<'_, K> {
    fn drop(&mut self) {
        let mut map = sync::lock(&self.hub.waiters);
        if let Some(entry) = map.get_mut(&self.bytes) {
            entry.0 -= 1;
            if entry.0 == 0 {
                map.remove(&self.bytes);
            }
        }
    }
}

/// How often the listener checks that its subscription's connection still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

/// How many ended phases an id's waiters remember.
const REMEMBERED: usize = 4;

impl<K> Hub<K> {
    pub(crate) fn new(event_capacity: usize) -> Self {
        Hub {
            waiters: Mutex::default(),
            resubscribed: Notify::new(),
            running: Mutex::default(),
            events: Events::new(event_capacity),
        }
    }

    pub(crate) fn register(&self, bytes: &[u8]) -> Registration<'_, K> {
        let waiters = {
            let mut map = sync::lock(&self.waiters);
            let entry = map.entry(bytes.to_vec()).or_default();
            entry.0 += 1;
            entry.1.clone()
        };
        Registration {
            hub: self,
            bytes: bytes.to_vec(),
            waiters,
        }
    }

    /// How many ids have waiters registered (the registry's size).
    #[cfg(test)]
    pub(crate) fn waited_ids(&self) -> usize {
        sync::lock(&self.waiters).len()
    }

    pub(crate) fn add_running(&self, bytes: &[u8], running: &Arc<Running>) {
        let mut map = sync::lock(&self.running);
        map.retain(|_, r| r.strong_count() > 0);
        map.insert((bytes.to_vec(), running.token), Arc::downgrade(running));
    }

    pub(crate) fn remove_running(&self, bytes: &[u8], token: u64) {
        sync::lock(&self.running).remove(&(bytes.to_vec(), token));
    }

    /// Every running phase of this process.
    pub(crate) fn all_running(&self) -> Vec<Arc<Running>> {
        sync::lock(&self.running)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Asks the running phase of this process holding `(bytes, token)`, if any, to
    /// stop.
    pub(crate) fn cancel_local(&self, bytes: &[u8], token: u64) {
        let running = sync::lock(&self.running)
            .get(&(bytes.to_vec(), token))
            .and_then(Weak::upgrade);
        if let Some(running) = running {
            running.request_cancel();
        }
    }
}

impl<K: StoredId + Clone + Send + 'static> Hub<K> {
    /// The subscription was (re-)established after a loss: wake every waiter, and tell
    /// every event subscriber that it may have missed events.
    pub(crate) fn lost_messages(&self) {
        self.resubscribed.notify_waiters();
        self.events.gap();
    }

    /// One message from the channel.
    pub(crate) fn dispatch(&self, payload: &[u8]) {
        match payload.first() {
            Some(b'T') => self.transition(payload),
            Some(b'P') => self.progress(payload),
            Some(b'C') => {
                let mut parts = payload.splitn(3, |&b| b == b':');
                let (_, token, bytes) = (parts.next(), parts.next(), parts.next());
                let token = token.and_then(|t| std::str::from_utf8(t).ok()?.parse().ok());
                if let (Some(token), Some(bytes)) = (token, bytes) {
                    self.cancel_local(bytes, token);
                }
            }
            _ => {}
        }
    }

    /// `P:<token>:<value>:<id>`: a running attempt's progress, for subscribers.
    fn progress(&self, payload: &[u8]) {
        if !self.events.has_subscribers() {
            return;
        }
        let mut parts = payload.splitn(4, |&b| b == b':');
        let _ = parts.next();
        let _token = parts.next();
        let value = parts
            .next()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        if let (Some(value), Some(bytes)) = (value, parts.next()) {
            if let Some(id) = K::decode(bytes) {
                self.events.send(Transition {
                    id,
                    from: Phase::Working,
                    to: Phase::Working,
                    failure: None,
                    progress: Some(value),
                });
            }
        }
    }

    fn transition(&self, payload: &[u8]) {
        let mut parts = payload.splitn(6, |&b| b == b':');
        let _ = parts.next();
        fn text(p: Option<&[u8]>) -> Option<&str> {
            p.and_then(|p| std::str::from_utf8(p).ok())
        }
        let (Some(from), Some(to), Some(reason), Some(token), Some(bytes)) = (
            text(parts.next()).and_then(Phase::from_name),
            text(parts.next()).and_then(Phase::from_name),
            text(parts.next()),
            text(parts.next()).and_then(|t| t.parse::<u64>().ok()),
            parts.next(),
        ) else {
            return;
        };
        // A finish that kept a value marks its reason so.
        let (reason, kept) = match reason.strip_suffix("+k") {
            Some(reason) => (reason, true),
            None => (reason, false),
        };
        let failure = FailureReason::from_name(reason);
        let waiters = sync::lock(&self.waiters)
            .get(bytes)
            .map(|(_, waiters)| waiters.clone());
        if let Some(waiters) = waiters {
            if !from.is_final() {
                let mut ended = sync::lock(&waiters.ended);
                if ended.len() == REMEMBERED {
                    ended.remove(0);
                }
                let settled = Settled {
                    phase: to,
                    failure,
                    kept: None,
                };
                ended.push((token, settled, kept));
            }
            waiters.notify.notify_waiters();
        }
        if self.events.has_subscribers() {
            // An id that does not decode into K was written by a recorder of another
            // id type on this namespace; it cannot be shown, so it is left out.
            if let Some(id) = K::decode(bytes) {
                self.events.send(Transition {
                    id,
                    from,
                    to,
                    failure,
                    progress: None,
                });
            }
        }
    }
}

/// The listener: subscribes, dispatches, and on a lost connection subscribes again
/// (with a growing pause, up to 2 s) until the recorder is gone (the sender of `stop`
/// is dropped). With several `clients` (a cluster's nodes, each of which delivers
/// every message published on the cluster), each new subscription goes to the next.
pub(crate) async fn listen<K: StoredId + Clone + Send + Sync + 'static>(
    clients: Vec<::redis::Client>,
    channel: String,
    hub: Weak<Hub<K>>,
    mut stop: tokio::sync::watch::Receiver<()>,
    connect_timeout: Duration,
    ready: tokio::sync::oneshot::Sender<Result<(), crate::StoreError>>,
) {
    let mut ready = Some(ready);
    let mut pause = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        let client = &clients[attempt % clients.len()];
        attempt = attempt.wrapping_add(1);
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let subscribed = tokio::select! {
            _ = stop.changed() => return,
            r = tokio::time::timeout(connect_timeout, subscribed) => r,
        };
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => super::error::store_error(e),
                    _ => {
                        crate::StoreError::TimedOut("subscribing to the namespace's channel".into())
                    }
                };
                // At the start, every node is tried once before the build fails.
                if attempt < clients.len() && ready.is_some() {
                    continue;
                }
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        pause = Duration::from_millis(50);
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            None => match hub.upgrade() {
                Some(hub) => hub.lost_messages(),
                None => return,
            },
        }
        let (mut sink, messages) = pubsub.split();
        let mut messages = std::pin::pin!(messages);
        // A connection that died without a word (a cut cable, a stalled peer) ends no
        // stream: a ping that gets no answer in time counts as a lost connection.
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings.tick().await;
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                _ = pings.tick() => {
                    let pong = tokio::time::timeout(connect_timeout, sink.ping::<()>()).await;
                    if matches!(pong, Ok(Ok(()))) {
                        continue;
                    }
                    break;
                }
                m = std::future::poll_fn(|cx| futures_core::Stream::poll_next(messages.as_mut(), cx)) => m,
            };
            let Some(message) = next else { break };
            let Some(hub) = hub.upgrade() else { return };
            hub.dispatch(message.get_payload_bytes());
        }
        // The connection is gone: messages sent from now on are lost until the next
        // subscription, which wakes every waiter.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_registration_of_an_id_removes_its_entry() {
        let hub = Hub::<String>::new(16);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..500u32 {
                        let id = (i % 3).to_be_bytes();
                        let first = hub.register(&id);
                        let second = hub.register(&id);
                        drop(first);
                        drop(second);
                    }
                });
            }
        });
        assert_eq!(hub.waited_ids(), 0, "every registration was dropped");
    }
}
