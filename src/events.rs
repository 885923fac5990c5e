//! Transition events: a bounded broadcast that costs one relaxed load per transition
//! while nobody subscribes.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::status::Transition;

/// What the channel carries: a transition, or word that some were lost before they
/// reached this process (a shared store's subscription dropped).
#[derive(Debug, Clone)]
enum Event<K> {
    Transition(Transition<K>),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Gap,
}

/// The publishing side, owned by the store.
pub(crate) struct Events<K> {
    capacity: usize,
    /// Created on the first subscription, so a recorder nobody listens to allocates no
    /// event buffer.
    sender: OnceLock<broadcast::Sender<Event<K>>>,
    subscribers: std::sync::Arc<AtomicUsize>,
}

/// The largest buffer of [`Events`]. Tokio's broadcast channel allocates its whole
/// buffer at once (and panics above `usize::MAX / 2`), so a larger value would only
/// turn a typo into an allocation failure.
const MAX_CAPACITY: usize = 1 << 20;

impl<K> Events<K> {
    /// A publisher whose buffer will hold `capacity` events, kept within
    /// 1 ..= [`MAX_CAPACITY`] (Tokio rounds it up to a power of two).
    pub(crate) fn new(capacity: usize) -> Self {
        Events {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            sender: OnceLock::new(),
            subscribers: std::sync::Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether anybody listens. Relaxed is enough: transitions are published under the
    /// shard lock, so a subscription that happens-before a transition (through that
    /// lock or anything else) is seen by it.
    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn send(&self, event: Transition<K>) {
        if let Some(sender) = self.sender.get() {
            // No receivers left is not an error for us.
            let _ = sender.send(Event::Transition(event));
        }
    }

    /// Tells every subscriber that an unknown number of transitions never reached
    /// this process; they see `Err(Missed(0))`.
    #[cfg(feature = "redis")]
    pub(crate) fn gap(&self) {
        if let Some(sender) = self.sender.get() {
            let _ = sender.send(Event::Gap);
        }
    }
}

impl<K: Clone + Send + 'static> Events<K> {
    pub(crate) fn subscribe(&self) -> TransitionStream<K> {
        let sender = self
            .sender
            .get_or_init(|| broadcast::channel(self.capacity).0);
        let receiver = sender.subscribe();
        self.subscribers.fetch_add(1, Ordering::SeqCst);
        TransitionStream {
            inner: BroadcastStream::new(receiver),
            subscribers: self.subscribers.clone(),
        }
    }
}

/// Some events were dropped because this subscriber fell behind: the number of events
/// it missed. The stream goes on with the oldest event still buffered.
///
/// `Missed(0)` means that an unknown number of events was lost before they reached
/// this process: the Redis recorder's subscription to its namespace dropped and was
/// re-established. Read the records again ([`counts`](crate::AsyncTasksRecorder::counts),
/// `status`) to catch up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Missed(pub u64);

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the subscriber fell behind and missed {} events", self.0)
    }
}

impl std::error::Error for Missed {}

/// A stream of [`Transition`]s, from
/// [`subscribe`](crate::AsyncTasksRecorder::subscribe).
///
/// It yields `Ok(transition)` in the order of each id's transitions, and `Err(Missed(n))`
/// when it fell more than the buffer's capacity behind (the recorder never waits for a
/// subscriber, and the buffer never grows). It ends once the recorder is gone: every
/// clone dropped and every spawned task and revoke of it ended (they keep the records
/// alive until they settle them).
#[must_use = "streams do nothing unless polled"]
pub struct TransitionStream<K> {
    inner: BroadcastStream<Event<K>>,
    subscribers: std::sync::Arc<AtomicUsize>,
}

impl<K> fmt::Debug for TransitionStream<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitionStream").finish_non_exhaustive()
    }
}

impl<K> Drop for TransitionStream<K> {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<K: Clone + Send + 'static> TransitionStream<K> {
    /// The next event, or `None` once the recorder is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before it completes loses no event.
    pub async fn next(&mut self) -> Option<Result<Transition<K>, Missed>> {
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }
}

impl<K: Clone + Send + 'static> futures_core::Stream for TransitionStream<K> {
    type Item = Result<Transition<K>, Missed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_next(cx).map(|item| {
            item.map(|r| match r {
                Ok(Event::Transition(t)) => Ok(t),
                Ok(Event::Gap) => Err(Missed(0)),
                Err(BroadcastStreamRecvError::Lagged(n)) => Err(Missed(n)),
            })
        })
    }
}
