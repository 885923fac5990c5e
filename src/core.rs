//! [`Core`]: what every clone of the in-memory recorder, and every guard of its running
//! phases, shares.

use crate::observe::Observer;

/// The store and the observer that reports what the recorder does with it. The store
/// knows nothing of the observer: it is given only its event stream and the phase
/// gauges, which move where the transitions happen; everything else is reported by
/// the recorder and the guards from what the store's operations returned.
pub(crate) struct Core<K, S> {
    pub(crate) store: S,
    pub(crate) observer: Observer<K>,
}

impl<K, S: std::fmt::Debug> std::fmt::Debug for Core<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
