//! The key layout of a namespace on the server.
//!
//! Every key of a namespace starts with `atr:{<namespace>.`, so one ACL rule
//! (`~atr:{<namespace>.*` and `&atr:{<namespace>.*` for the channel) confines a user to
//! it. Records are spread over a fixed number of slot groups; group `g` owns eleven keys
//! whose hash tag is `{<namespace>.<g>}`, so every script that changes one id touches
//! keys of one Redis Cluster slot (and so does every other script: counts and listings
//! run one script per group):
//!
//! | key suffix | type | holds |
//! |------------|------|-------|
//! | `work`     | hash | `Working` ids: `token:attempts:since_ms:cancel:previous_failure` |
//! | `lease`    | sorted set | ids of running phases (`Working`, `Revoking`), scored by lease end (server ms) |
//! | `succ`     | hash | `Success` ids: `attempts:since_ms:token`, empty for a tombstone |
//! | `fail`     | hash | `Failed` ids: `attempts:reason:since_ms:token` |
//! | `rvk`      | hash | `Revoking` ids: `token:since_ms:<the success's value>` |
//! | `seq`      | string | the group's fencing-token counter |
//! | `fexp`     | sorted set | `Failed` ids under retention, in the order they failed |
//! | `sexp`     | sorted set | `Success` ids with details under retention, in the order they succeeded |
//! | `kept`     | hash | what finished records of keeping launches kept: `token:<o or m><text>`, or `token:t<len>:<limit>` |
//! | `queue`    | hash | `Working` ids whose future waits for a running slot of its process: the attempt's token |
//! | `prog`     | hash | the last progress a running attempt reported: `token:value` |
//!
//! An id lives in the group its bytes hash to ([`group_of`](super::id::group_of)), in
//! exactly one of the four record hashes; the hash it is in is its phase, so listing a
//! phase reads only that phase's hashes. Ids are hash fields, never key names, so no id
//! can change the layout. No key has a TTL: the sorted set and the hashes refer to each
//! other, and a key expiring on its own would let them drift.

use crate::StoreError;

/// The most slot groups a namespace may have.
pub(crate) const MAX_GROUPS: u16 = 1024;

/// The keys of each group, in the order the scripts take them.
pub(crate) const GROUP_KEYS: [&str; 11] = [
    "work", "lease", "succ", "fail", "rvk", "seq", "fexp", "sexp", "kept", "queue", "prog",
];

/// Where a namespace's keys are.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    namespace: String,
    groups: u16,
    /// The keys of every group, `GROUP_KEYS.len()` per group, in group order.
    keys: Vec<String>,
    channel: String,
    meta: String,
}

impl Layout {
    /// Checks the namespace (1 to 64 ASCII letters, digits, `_` or `-`: no `.`, which
    /// ends it in key names, and no braces, which would move the hash tag) and the
    /// group count.
    pub(crate) fn new(namespace: &str, groups: u16) -> Result<Self, StoreError> {
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(StoreError::InvalidConfig(format!(
                "namespace {namespace:?}: use 1 to 64 ASCII letters, digits, '_' or '-'"
            )));
        }
        if groups == 0 || groups > MAX_GROUPS {
            return Err(StoreError::InvalidConfig(format!(
                "{groups} slot groups: use 1 to {MAX_GROUPS}"
            )));
        }
        let keys = (0..groups)
            .flat_map(|g| {
                GROUP_KEYS
                    .iter()
                    .map(move |suffix| format!("atr:{{{namespace}.{g}}}:{suffix}"))
            })
            .collect();
        Ok(Layout {
            namespace: namespace.to_owned(),
            groups,
            keys,
            channel: format!("atr:{{{namespace}.events}}"),
            meta: format!("atr:{{{namespace}.meta}}"),
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// What every key and the channel of the namespace begin with.
    pub(crate) fn prefix(&self) -> String {
        format!("atr:{{{}.", self.namespace)
    }

    pub(crate) fn groups(&self) -> u16 {
        self.groups
    }

    /// The keys of group `g`.
    pub(crate) fn group(&self, g: u16) -> &[String] {
        let start = usize::from(g) * GROUP_KEYS.len();
        &self.keys[start..start + GROUP_KEYS.len()]
    }

    /// Every group's keys.
    #[cfg(test)]
    fn all(&self) -> &[String] {
        &self.keys
    }

    /// The pub/sub channel of the namespace's transitions and cancel requests.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// The hash that records the namespace's layout (its group count).
    pub(crate) fn meta(&self) -> &str {
        &self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_one_prefix_and_one_tag_per_group() {
        let layout = Layout::new("uploads", 4).unwrap();
        assert_eq!(layout.group(2)[0], "atr:{uploads.2}:work");
        assert_eq!(layout.group(3)[5], "atr:{uploads.3}:seq");
        assert_eq!(layout.group(3)[7], "atr:{uploads.3}:sexp");
        assert_eq!(layout.group(3)[8], "atr:{uploads.3}:kept");
        assert_eq!(layout.group(3)[9], "atr:{uploads.3}:queue");
        assert_eq!(layout.group(3)[10], "atr:{uploads.3}:prog");
        assert_eq!(layout.all().len(), 44);
        for key in layout.all().iter().chain([&layout.channel, &layout.meta]) {
            assert!(key.starts_with("atr:{uploads."), "{key}");
        }
    }

    #[test]
    fn bad_namespaces_and_group_counts_are_refused() {
        for ns in ["", "a.b", "a}b", "{x}", "sp ace", &"x".repeat(65)] {
            assert!(
                matches!(Layout::new(ns, 16), Err(StoreError::InvalidConfig(_))),
                "{ns}"
            );
        }
        assert!(Layout::new("ok", 0).is_err());
        assert!(Layout::new("ok", MAX_GROUPS + 1).is_err());
        assert!(Layout::new("a-b_C9", MAX_GROUPS).is_ok());
    }
}
