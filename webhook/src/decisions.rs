//! Decisions already taken under the approvals in force, so that an image seen again is
//! not parsed and looked up again.
//!
//! A hub sends a small set of images through the webhook again and again, because every
//! replica, rollout and Helm upgrade repeats them. [`common::decide`] is a pure function of
//! the image, the namespace and the approvals, so its result can be reused for as long as
//! the same approvals are in force. The cache remembers which approvals it was filled
//! under and starts empty when the store puts others in force, so a new approval or a
//! withdrawn one takes effect on the very next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use common::{Approvals, Decision};

/// Number of decisions kept before the cache starts again from empty. At an estimated few
/// hundred bytes a decision, this bounds the cache to about 2 MiB, far more than the distinct
/// images and namespaces of one hub.
pub const CAPACITY: usize = 8192;

/// The decisions taken under one approvals document, by namespace and then by image.
#[derive(Debug, Default)]
struct Filled {
    approvals: Option<Arc<Approvals>>,
    by_namespace: HashMap<String, HashMap<String, Decision>>,
    len: usize,
}

/// A bounded cache of [`common::decide`] results, shared by every request.
#[derive(Debug, Default)]
pub struct DecisionCache {
    filled: Mutex<Filled>,
}

impl DecisionCache {
    /// Creates an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the decision for `image` in `namespace` under `approvals`, from the cache
    /// when it was taken under the same approvals, else from [`common::decide`].
    pub fn decide(&self, image: &str, namespace: &str, approvals: &Arc<Approvals>) -> Decision {
        if let Some(decision) = self.cached(image, namespace, approvals) {
            return decision;
        }

        // The lock is not held while deciding, so a slow decision never holds up others.
        // Two requests may then decide the same image at once, and both get the same result.
        let decision = common::decide(image, namespace, approvals);
        self.insert(image, namespace, approvals, decision.clone());
        decision
    }

    /// Returns the number of decisions in the cache.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Returns whether the cache contains no decision.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cached(&self, image: &str, namespace: &str, approvals: &Arc<Approvals>) -> Option<Decision> {
        let filled = self.lock();
        let same_approvals = filled
            .approvals
            .as_ref()
            .is_some_and(|cached| Arc::ptr_eq(cached, approvals));
        if !same_approvals {
            return None;
        }
        filled.by_namespace.get(namespace)?.get(image).cloned()
    }

    fn insert(&self, image: &str, namespace: &str, approvals: &Arc<Approvals>, decision: Decision) {
        let mut filled = self.lock();
        let same_approvals = filled
            .approvals
            .as_ref()
            .is_some_and(|cached| Arc::ptr_eq(cached, approvals));
        if !same_approvals || filled.len >= CAPACITY {
            *filled = Filled {
                approvals: Some(approvals.clone()),
                ..Filled::default()
            };
        }

        let images = filled.by_namespace.entry(namespace.to_owned()).or_default();
        if images.insert(image.to_owned(), decision).is_none() {
            filled.len += 1;
        }
    }

    /// Locks the cache. A panic while the lock was held cannot leave a half-written entry
    /// (each insert is one map operation), so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Filled> {
        self.filled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use common::KeepReason;

    use super::*;

    fn approvals(document: &str) -> Arc<Approvals> {
        let (approvals, errors) = Approvals::parse(document).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        Arc::new(approvals)
    }

    const APPROVED: &str = "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n";

    #[test]
    fn cached_decision_matches_decide() {
        let cache = DecisionCache::new();
        let approvals = approvals(APPROVED);

        let first = cache.decide("mojaloop/quoting-service:v10.4.0", "mojaloop", &approvals);
        let second = cache.decide("mojaloop/quoting-service:v10.4.0", "mojaloop", &approvals);

        let expected = common::decide("mojaloop/quoting-service:v10.4.0", "mojaloop", &approvals);
        assert_eq!(first, expected);
        assert_eq!(second, expected);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn new_approvals_empty_the_cache() {
        let cache = DecisionCache::new();
        let before = approvals(APPROVED);
        let after = approvals("approvals: []\n");
        let image = "mojaloop/quoting-service:v10.4.0";
        assert!(matches!(cache.decide(image, "mojaloop", &before), Decision::Rewrite(_)));

        let decision = cache.decide(image, "mojaloop", &after);

        assert_eq!(decision, Decision::Keep(KeepReason::NoApproval));
        assert_eq!(cache.len(), 1);
    }

    /// An approval scoped to some namespaces decides differently in the others, so a
    /// decision is never reused across namespaces.
    #[test]
    fn decisions_kept_per_namespace() {
        let cache = DecisionCache::new();
        let approvals = approvals(
            "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    namespaces: [mojaloop]\n",
        );
        let image = "mojaloop/quoting-service:v10.4.0";

        let inside = cache.decide(image, "mojaloop", &approvals);
        let outside = cache.decide(image, "payments", &approvals);

        assert!(matches!(inside, Decision::Rewrite(_)));
        assert_eq!(outside, Decision::Keep(KeepReason::NamespaceOutOfScope));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn cache_never_exceeds_capacity() {
        let cache = DecisionCache::new();
        let approvals = approvals(APPROVED);

        for index in 0..CAPACITY + 10 {
            cache.decide(&format!("example/app-{index}:v1.0.0"), "mojaloop", &approvals);
        }

        assert!(cache.len() <= CAPACITY);
        assert_eq!(cache.len(), 10);
    }
}
