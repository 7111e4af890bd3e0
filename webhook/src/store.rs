//! The approvals in force, swapped as a whole when their source changes.
//!
//! ```text
//!   ConfigMap image-patch-approvals ──watch──┐
//!                                            ├──► ApprovalsStore::apply_document ──► ArcSwap<Approvals>
//!   --approvals-file ───────────poll─────────┘                                         │ load()
//!                                                                    admission handler ◄┘
//! ```
//!
//! A request reads the store without waiting: it takes the approvals in force at that moment.
//! A document that cannot be parsed is reported and leaves the last good approvals in force.
//!
//! The manifests do not ship the ConfigMap, so that re-applying them never resets approvals,
//! and the operator creates it once. Until then the watch's initial listing finds nothing:
//! the store puts no approvals in force and is ready, so a fresh install becomes ready and
//! rewrites nothing. A ConfigMap created later is applied like any edit.
//!
//! A deleted ConfigMap withdraws every approval rather than keeping the last good ones.
//! Deleting it is an operator's explicit act, and approvals kept after their only record
//! is gone could not be read from the cluster. Workloads then roll back to their charts'
//! tags on their next deploy.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use common::Approvals;
use common::approvals::{CONFIGMAP_KEY, CONFIGMAP_NAME};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::metrics::{ConfigErrorKind, Metrics};

/// The approvals in force and whether any were loaded yet.
#[derive(Debug)]
pub struct ApprovalsStore {
    current: ArcSwap<Approvals>,
    loaded: AtomicBool,
    /// Whether the source had no document at its last reading, so that a relist that
    /// still finds none logs nothing.
    absent: AtomicBool,
    metrics: Arc<Metrics>,
}

impl ApprovalsStore {
    /// Creates an empty store that is not ready until the first load.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Approvals::default()),
            loaded: AtomicBool::new(false),
            absent: AtomicBool::new(false),
            metrics,
        }
    }

    /// Returns the approvals in force (empty before the first load).
    pub fn load(&self) -> Arc<Approvals> {
        self.current.load_full()
    }

    /// Returns whether approvals were loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Parses `document` and puts its valid entries in force. Invalid entries are logged,
    /// counted and skipped. A document that cannot be parsed is logged and counted, and the
    /// last good approvals stay in force. `source` names where the document came from.
    pub fn apply_document(
        &self,
        document: &str,
        source: &str,
    ) -> Result<(), common::approvals::DocumentError> {
        let (approvals, entry_errors) = match Approvals::parse(document) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, source, next = self.fallback(), "approvals document rejected");
                self.metrics
                    .count_config_errors(ConfigErrorKind::Document, 1);
                return Err(error);
            }
        };

        for error in &entry_errors {
            tracing::warn!(%error, source, "invalid approvals entry skipped");
        }
        self.metrics
            .count_config_errors(ConfigErrorKind::Entry, entry_errors.len());

        let count = approvals.approvals().len();
        self.replace(approvals);
        self.absent.store(false, Ordering::Release);
        tracing::info!(
            approvals = count,
            skipped = entry_errors.len(),
            source,
            "approvals loaded"
        );
        Ok(())
    }

    /// Puts an empty set of approvals in force, because the source has no document, and
    /// marks the store ready. Logs once per absence: at info when no approvals were in
    /// force, at warn when this withdraws some.
    pub fn apply_absent(&self, source: &str) {
        let withdrawn = self.load().approvals().len();
        self.replace(Approvals::default());
        if self.absent.swap(true, Ordering::AcqRel) {
            return;
        }
        if withdrawn == 0 {
            tracing::info!(
                source,
                "no approvals document; no image is rewritten until it is created"
            );
        } else {
            tracing::warn!(
                source,
                withdrawn,
                "approvals document removed; every approval is withdrawn and no image is rewritten"
            );
        }
    }

    /// Says what stays in force after a document could not be used: the last good
    /// approvals, or nothing yet, in which case the webhook is not ready.
    fn fallback(&self) -> &'static str {
        if self.is_loaded() {
            "the last good approvals stay in force"
        } else {
            "no approvals were loaded yet, so the webhook stays unready until a valid document is read"
        }
    }

    fn replace(&self, approvals: Approvals) {
        self.metrics
            .approvals_loaded
            .set(approvals.approvals().len() as i64);
        self.current.store(Arc::new(approvals));
        self.loaded.store(true, Ordering::Release);
    }

    /// Watches the ConfigMap `image-patch-approvals` in `namespace` and applies each version
    /// of it. Runs until the task is dropped; watch errors are logged and retried with backoff.
    pub async fn watch_configmap(self: Arc<Self>, client: Client, namespace: String) {
        let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let source = format!("configmap {namespace}/{CONFIGMAP_NAME}");

        // Whether the current initial listing found the ConfigMap.
        let mut listed = false;
        let events = watcher(api, config).default_backoff();
        futures::pin_mut!(events);
        loop {
            match events.try_next().await {
                Ok(Some(event)) => match event {
                    watcher::Event::Init => listed = false,
                    watcher::Event::InitApply(configmap) | watcher::Event::Apply(configmap) => {
                        listed = true;
                        self.apply_configmap(&configmap, &source);
                    }
                    watcher::Event::InitDone if !listed => self.apply_absent(&source),
                    watcher::Event::InitDone => {}
                    watcher::Event::Delete(_) => self.apply_absent(&source),
                },
                Ok(None) => return,
                Err(error) => tracing::warn!(%error, source, "approvals watch failed; retrying"),
            }
        }
    }

    fn apply_configmap(&self, configmap: &ConfigMap, source: &str) {
        let document = configmap
            .data
            .as_ref()
            .and_then(|data| data.get(CONFIGMAP_KEY));
        match document {
            Some(document) => {
                // The error is logged and counted inside.
                let _ = self.apply_document(document, source);
            }
            None => {
                tracing::warn!(
                    source,
                    key = CONFIGMAP_KEY,
                    next = self.fallback(),
                    "approvals ConfigMap has no such key"
                );
                self.metrics
                    .count_config_errors(ConfigErrorKind::Document, 1);
            }
        }
    }

    /// Reads `path` every `interval` and applies its contents each time they change.
    /// A missing or unreadable file is logged and leaves the last good approvals in force.
    pub async fn poll_file(self: Arc<Self>, path: PathBuf, interval: Duration) {
        let source = path.display().to_string();
        let mut last: Option<Vec<u8>> = None;
        // Logged once until the file can be read again, not on every poll.
        let mut read_failing = false;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let contents = match tokio::fs::read(&path).await {
                Ok(contents) => {
                    read_failing = false;
                    contents
                }
                Err(error) => {
                    if !read_failing {
                        tracing::warn!(%error, source, next = self.fallback(), "cannot read approvals file");
                        read_failing = true;
                    }
                    continue;
                }
            };
            if last.as_ref() == Some(&contents) {
                continue;
            }
            match std::str::from_utf8(&contents) {
                Ok(document) => {
                    let _ = self.apply_document(document, &source);
                }
                Err(error) => {
                    tracing::warn!(%error, source, next = self.fallback(), "approvals file is not UTF-8");
                    self.metrics
                        .count_config_errors(ConfigErrorKind::Document, 1);
                }
            }
            last = Some(contents);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "configmap image-patch-system/image-patch-approvals";
    const APPROVAL: &str = "approvals:
  - image: mojaloop/quoting-service
    version: v10.4.0
    patch: v10.4.0.2-patch
";

    fn store() -> ApprovalsStore {
        ApprovalsStore::new(Arc::new(Metrics::new()))
    }

    #[test]
    fn missing_configmap_makes_store_ready() {
        let store = store();
        assert!(!store.is_loaded());

        store.apply_absent(SOURCE);

        assert!(store.is_loaded());
        assert!(store.load().approvals().is_empty());
    }

    #[test]
    fn missing_then_created_then_deleted() {
        let store = store();
        store.apply_absent(SOURCE);

        store.apply_document(APPROVAL, SOURCE).unwrap();
        assert_eq!(store.load().approvals().len(), 1);
        assert_eq!(store.metrics.approvals_loaded.get(), 1);

        // Deletion withdraws the approvals instead of keeping the last good ones.
        store.apply_absent(SOURCE);
        assert!(store.is_loaded());
        assert!(store.load().approvals().is_empty());
        assert_eq!(store.metrics.approvals_loaded.get(), 0);

        // A relist that still finds no ConfigMap changes nothing.
        store.apply_absent(SOURCE);
        assert!(store.load().approvals().is_empty());

        // Creating it again puts its approvals back in force.
        store.apply_document(APPROVAL, SOURCE).unwrap();
        assert_eq!(store.load().approvals().len(), 1);
    }

    #[test]
    fn unparseable_document_keeps_last_good() {
        let store = store();
        store.apply_document(APPROVAL, SOURCE).unwrap();

        let result = store.apply_document("approvals: [ {image: unterminated", SOURCE);

        assert!(result.is_err());
        assert_eq!(store.load().approvals().len(), 1);
    }

    #[test]
    fn unparseable_first_document_is_not_ready() {
        let store = store();

        let result = store.apply_document("approvals: [ {image: unterminated", SOURCE);

        assert!(result.is_err());
        assert!(!store.is_loaded());
    }
}
