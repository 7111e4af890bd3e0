//! Which patches were announced, in the ConfigMap `image-patch-state` (key `state.json`),
//! which configuration errors of the approvals document were notified, and the last
//! approvals document that parsed, which a scan falls back to when the approvals
//! ConfigMap contains a document that cannot be parsed.
//!
//! A patch counts as announced only once Slack accepted the message, yet two scans
//! that run at once must not both send it. So a scan first *claims* the patches it is
//! about to announce, with a write conditioned on the `resourceVersion` it read; the
//! scan that loses the race re-reads and drops what the winner claimed. After Slack
//! responded, the claim turns into `announced` records, or is released on failure so
//! the next scan retries. A claim of a scan that died is ignored after its TTL.
//!
//! Two sets of texts follow the same steps, each as one unit: the configuration errors
//! of the approvals document, and the approvals that the registry does not confirm
//! (see [`NotifiedSet`]). A scan claims, sends and records the sorted set of texts. A
//! set is thus notified once, and again only after it changed or after a scan found
//! it empty and cleared the record.
//!
//! ```text
//!  read ─► unannounced ─► claim (rv) ─► send ─┬─ ok ────► confirm: claim → announced
//!            ▲              │ conflict       └─ failed ─► release: drop claim
//!            └──────────────┘
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::configmap::{ConfigMapStore, Versioned, Written};
use crate::retry::RetryPolicy;

/// Name of the state ConfigMap.
pub const CONFIGMAP_NAME: &str = "image-patch-state";
/// Key of the state document.
pub const CONFIGMAP_KEY: &str = "state.json";

/// Attempts of one conditional write before the scan gives up on the state for this run.
const WRITE_ATTEMPTS: usize = 10;

/// Retries of a whole update (read, change, conditional write) after an API server error
/// or contention: 5 attempts over about 15 s of backoff.
pub const UPDATE_RETRY: RetryPolicy = RetryPolicy { attempts: 5, backoff: Duration::from_secs(1), max_retry_after: Duration::ZERO };

/// A set of texts that is notified as one unit: once, and again only when it changes
/// or returns after a scan found it empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifiedSet {
    /// The errors of the approvals document.
    ConfigurationErrors,
    /// The approvals that the registry does not confirm, by the keys of
    /// `UnconfirmedApproval::notice_key`, which leave out changing error details.
    UnconfirmedApprovals,
}

/// A repository's patch tag: the unit that is announced once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatchKey {
    /// The source repository, `registry/path`.
    pub repository: String,
    /// The patch tag.
    pub patch: String,
}

/// A patch that Slack accepted a notice for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announced {
    /// The repository and patch tag.
    #[serde(flatten)]
    pub key: PatchKey,
    /// The digest named in the notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When Slack accepted the notice.
    pub announced_at: DateTime<Utc>,
}

/// Patches that one scan is sending a notice for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The claiming scan.
    pub scan_id: String,
    /// When it claimed them.
    pub claimed_at: DateTime<Utc>,
    /// The claimed patches.
    pub patches: Vec<PatchKey>,
    /// The claimed set of configuration errors, empty when the scan claimed none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configuration_errors: Vec<String>,
    /// The claimed set of unconfirmed approvals, empty when the scan claimed none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed_approvals: Vec<String>,
}

impl Claim {
    fn texts(&self, set: NotifiedSet) -> &[String] {
        match set {
            NotifiedSet::ConfigurationErrors => &self.configuration_errors,
            NotifiedSet::UnconfirmedApprovals => &self.unconfirmed_approvals,
        }
    }

    fn texts_mut(&mut self, set: NotifiedSet) -> &mut Vec<String> {
        match set {
            NotifiedSet::ConfigurationErrors => &mut self.configuration_errors,
            NotifiedSet::UnconfirmedApprovals => &mut self.unconfirmed_approvals,
        }
    }
}

/// A set of texts, configuration errors or unconfirmed approvals, that Slack accepted a notice for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedErrors {
    /// The texts, sorted.
    pub errors: Vec<String>,
    /// When Slack accepted the notice.
    pub notified_at: DateTime<Utc>,
}

/// The state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    /// Announced patches, oldest first.
    #[serde(default)]
    pub announced: Vec<Announced>,
    /// Claims of scans that are sending notices.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// The last approvals document that parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_approvals: Option<LastGoodApprovals>,
    /// The configuration errors notified last, until a scan finds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_configuration_errors: Option<NotifiedErrors>,
    /// The unconfirmed approvals notified last, until a scan finds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_unconfirmed_approvals: Option<NotifiedErrors>,
}

/// An approvals document that parsed, as a scan read it from the approvals ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastGoodApprovals {
    /// The text of key `approvals.yaml`.
    pub document: String,
    /// When a scan first read this text.
    pub recorded_at: DateTime<Utc>,
}

/// A failure to read or write the state. The scan then announces nothing this time.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The API server failed.
    #[error("state ConfigMap {CONFIGMAP_NAME}: {0}")]
    Api(#[from] kube::Error),
    /// The document cannot be parsed; fixing or deleting the ConfigMap re-announces what it recorded.
    #[error("state ConfigMap {CONFIGMAP_NAME}, key {CONFIGMAP_KEY}, cannot be parsed: {0}")]
    Parse(String),
    /// Other scans kept changing the ConfigMap.
    #[error("state ConfigMap {CONFIGMAP_NAME} changed on each of {WRITE_ATTEMPTS} write attempts")]
    Contended,
}

impl StateDocument {
    /// Returns the keys of `candidates` that are neither announced nor claimed by a live
    /// claim of another scan.
    pub fn unannounced(&self, candidates: &BTreeSet<PatchKey>, scan_id: &str, now: DateTime<Utc>, claim_ttl: Duration) -> BTreeSet<PatchKey> {
        let announced: BTreeSet<&PatchKey> = self.announced.iter().map(|record| &record.key).collect();
        let claimed: BTreeSet<&PatchKey> = self
            .claims
            .iter()
            .filter(|claim| claim.scan_id != scan_id && is_live(claim, now, claim_ttl))
            .flat_map(|claim| &claim.patches)
            .collect();
        candidates.iter().filter(|key| !announced.contains(key) && !claimed.contains(key)).cloned().collect()
    }

    /// Records `scan_id`'s claim on `patches`, replacing its earlier one and dropping expired claims.
    pub fn claim(&mut self, scan_id: &str, patches: &BTreeSet<PatchKey>, now: DateTime<Utc>, claim_ttl: Duration) {
        self.claims.retain(|claim| claim.scan_id != scan_id && is_live(claim, now, claim_ttl));
        self.claims.push(Claim {
            scan_id: scan_id.to_string(),
            claimed_at: now,
            patches: patches.iter().cloned().collect(),
            configuration_errors: Vec::new(),
            unconfirmed_approvals: Vec::new(),
        });
    }

    fn notified(&mut self, set: NotifiedSet) -> &mut Option<NotifiedErrors> {
        match set {
            NotifiedSet::ConfigurationErrors => &mut self.notified_configuration_errors,
            NotifiedSet::UnconfirmedApprovals => &mut self.notified_unconfirmed_approvals,
        }
    }

    /// Checks whether `texts` (sorted) is a `set` that is neither notified nor claimed
    /// by a live claim of another scan. An empty set is never to be notified.
    pub fn unnotified(&self, set: NotifiedSet, texts: &[String], scan_id: &str, now: DateTime<Utc>, claim_ttl: Duration) -> bool {
        if texts.is_empty() {
            return false;
        }
        let record = match set {
            NotifiedSet::ConfigurationErrors => &self.notified_configuration_errors,
            NotifiedSet::UnconfirmedApprovals => &self.notified_unconfirmed_approvals,
        };
        let notified = record.as_ref().is_some_and(|record| record.errors == texts);
        let claimed = self
            .claims
            .iter()
            .any(|claim| claim.scan_id != scan_id && is_live(claim, now, claim_ttl) && claim.texts(set) == texts);
        !notified && !claimed
    }

    /// Adds `texts` as `set` to `scan_id`'s claim, which [`StateDocument::claim`] made first.
    pub fn claim_set(&mut self, set: NotifiedSet, scan_id: &str, texts: &[String]) {
        if let Some(claim) = self.claims.iter_mut().find(|claim| claim.scan_id == scan_id) {
            *claim.texts_mut(set) = texts.to_vec();
        }
    }

    /// Records `texts` as the notified `set`, replacing what was notified before.
    pub fn record_set(&mut self, set: NotifiedSet, texts: &[String], now: DateTime<Utc>) {
        *self.notified(set) = Some(NotifiedErrors { errors: texts.to_vec(), notified_at: now });
    }

    /// Clears the notified `set`, so that its next texts are notified even when they
    /// equal the last ones. Returns `false`, and changes nothing, when none is recorded.
    pub fn clear_set(&mut self, set: NotifiedSet) -> bool {
        self.notified(set).take().is_some()
    }

    /// Turns the claimed `patches` into announced records and drops `scan_id`'s claim.
    pub fn confirm(&mut self, scan_id: &str, patches: &BTreeMap<PatchKey, Option<String>>, now: DateTime<Utc>) {
        self.claims.retain(|claim| claim.scan_id != scan_id);
        for (key, digest) in patches {
            if !self.announced.iter().any(|record| &record.key == key) {
                self.announced.push(Announced { key: key.clone(), digest: digest.clone(), announced_at: now });
            }
        }
    }

    /// Records `document` as the last good approvals. Returns `false`, and changes
    /// nothing, when it is recorded already, so that an unchanged document costs no write.
    pub fn record_good_approvals(&mut self, document: &str, now: DateTime<Utc>) -> bool {
        if self.last_good_approvals.as_ref().is_some_and(|recorded| recorded.document == document) {
            return false;
        }
        self.last_good_approvals = Some(LastGoodApprovals { document: document.to_string(), recorded_at: now });
        true
    }

    /// Drops `scan_id`'s claim, so that the next scan announces those patches.
    pub fn release(&mut self, scan_id: &str) {
        self.claims.retain(|claim| claim.scan_id != scan_id);
    }
}

fn is_live(claim: &Claim, now: DateTime<Utc>, claim_ttl: Duration) -> bool {
    let age = (now - claim.claimed_at).to_std().unwrap_or(Duration::ZERO);
    age < claim_ttl
}

/// The state ConfigMap.
pub struct StateStore {
    store: ConfigMapStore,
}

impl StateStore {
    /// Addresses the state ConfigMap in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self { store: ConfigMapStore::new(client, namespace, CONFIGMAP_NAME) }
    }

    /// Reads the state document.
    pub async fn read(&self) -> Result<StateDocument, StateError> {
        let versioned = self.store.read().await?;
        parse(&versioned)
    }

    /// Applies `change` to the current document and writes it conditionally, re-reading
    /// and re-applying on conflict. `change` returns `false` to skip the write.
    /// Returns the document as written (or as read when skipped).
    pub async fn update<F>(&self, mut change: F) -> Result<StateDocument, StateError>
    where
        F: FnMut(&mut StateDocument) -> bool,
    {
        for _ in 0..WRITE_ATTEMPTS {
            let versioned = self.store.read().await?;
            let mut document = parse(&versioned)?;
            if !change(&mut document) {
                return Ok(document);
            }
            let text = serde_json::to_string_pretty(&document).expect("the state document always serializes");
            let data = BTreeMap::from([(CONFIGMAP_KEY.to_string(), text)]);
            match self.store.write(data, &versioned).await? {
                Written::Stored(_) => return Ok(document),
                Written::Conflict => tracing::info!(configmap = CONFIGMAP_NAME, "another scan changed the state, re-reading"),
            }
        }
        Err(StateError::Contended)
    }

    /// Runs [`StateStore::update`] up to `retry.attempts` times, with backoff, while it
    /// fails with an API server error or contention. A document that cannot be parsed,
    /// or a rejection that another attempt cannot change (such as 403), ends it at once.
    pub async fn update_with_retry<F>(&self, retry: &RetryPolicy, mut change: F) -> Result<StateDocument, StateError>
    where
        F: FnMut(&mut StateDocument) -> bool,
    {
        let mut failed = 0;
        loop {
            let error = match self.update(&mut change).await {
                Ok(document) => return Ok(document),
                Err(error) => error,
            };
            failed += 1;
            if !error.is_transient() || failed >= retry.attempts {
                return Err(error);
            }
            let delay = retry.backoff_after(failed);
            tracing::warn!(configmap = CONFIGMAP_NAME, %error, attempt = failed, delay_ms = delay.as_millis() as u64, "cannot update the state, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

impl StateError {
    /// Checks whether another attempt may succeed: server errors, timeouts, transport
    /// errors, 429 and contention, but not other 4xx responses or an unreadable document.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Api(kube::Error::Api(status)) => !(400..500).contains(&status.code) || status.code == 429,
            StateError::Api(_) | StateError::Contended => true,
            StateError::Parse(_) => false,
        }
    }
}

fn parse(versioned: &Versioned) -> Result<StateDocument, StateError> {
    match versioned.data.get(CONFIGMAP_KEY) {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map_err(|error| StateError::Parse(error.to_string())),
        _ => Ok(StateDocument::default()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::get;
    use chrono::TimeZone;
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    const TTL: Duration = Duration::from_secs(900);

    fn key(patch: &str) -> PatchKey {
        PatchKey { repository: "docker.io/mojaloop/quoting-service".into(), patch: patch.into() }
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 12, minute, 0).unwrap()
    }

    #[test]
    fn state_first_scan_announces_everything() {
        let candidates = BTreeSet::from([key("v10.4.0.1-patch"), key("v10.4.0.2-patch")]);

        let new = StateDocument::default().unannounced(&candidates, "scan-a", at(0), TTL);

        assert_eq!(new, candidates);
    }

    #[test]
    fn state_skips_announced_and_live_claims() {
        let mut document = StateDocument::default();
        document.confirm("scan-a", &BTreeMap::from([(key("v1.0.0.1-patch"), None)]), at(0));
        document.claim("scan-b", &BTreeSet::from([key("v1.0.0.2-patch")]), at(1), TTL);
        let candidates = BTreeSet::from([key("v1.0.0.1-patch"), key("v1.0.0.2-patch"), key("v1.0.0.3-patch")]);

        let for_scan_c = document.unannounced(&candidates, "scan-c", at(2), TTL);
        let for_scan_b = document.unannounced(&candidates, "scan-b", at(2), TTL);

        assert_eq!(for_scan_c, BTreeSet::from([key("v1.0.0.3-patch")]));
        assert_eq!(for_scan_b, BTreeSet::from([key("v1.0.0.2-patch"), key("v1.0.0.3-patch")]));
    }

    #[test]
    fn state_expired_claim_is_ignored() {
        let mut document = StateDocument::default();
        document.claim("dead-scan", &BTreeSet::from([key("v1.0.0.1-patch")]), at(0), TTL);
        let candidates = BTreeSet::from([key("v1.0.0.1-patch")]);

        let new = document.unannounced(&candidates, "scan-b", at(16), TTL);

        assert_eq!(new, candidates);
    }

    #[test]
    fn state_confirm_and_release_drop_claim() {
        let mut document = StateDocument::default();
        let patches = BTreeSet::from([key("v1.0.0.1-patch")]);
        document.claim("scan-a", &patches, at(0), TTL);
        document.claim("scan-b", &patches, at(0), TTL);

        document.confirm("scan-a", &BTreeMap::from([(key("v1.0.0.1-patch"), Some("sha256:ab".into()))]), at(1));
        document.release("scan-b");

        assert!(document.claims.is_empty());
        assert_eq!(document.announced.len(), 1);
        assert_eq!(document.announced[0].digest.as_deref(), Some("sha256:ab"));
    }

    #[test]
    fn state_document_round_trips() {
        let mut document = StateDocument::default();
        document.confirm("scan-a", &BTreeMap::from([(key("v1.0.0.1-patch"), None)]), at(0));

        let text = serde_json::to_string(&document).unwrap();
        let parsed: StateDocument = serde_json::from_str(&text).unwrap();

        assert!(text.contains(r#""repository":"docker.io/mojaloop/quoting-service""#));
        assert!(text.contains(r#""announcedAt""#));
        assert_eq!(parsed, document);
    }

    #[test]
    fn good_approvals_recorded_once() {
        let mut document = StateDocument::default();

        let first = document.record_good_approvals("approvals: []\n", at(0));
        let unchanged = document.record_good_approvals("approvals: []\n", at(1));
        let edited = document.record_good_approvals("policies: []\n", at(2));

        assert!(first);
        assert!(!unchanged);
        assert!(edited);
        let recorded = document.last_good_approvals.as_ref().unwrap();
        assert_eq!(recorded.document, "policies: []\n");
        assert_eq!(recorded.recorded_at, at(2));
    }

    fn errors(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|text| text.to_string()).collect()
    }

    #[rstest]
    #[case::configuration_errors(NotifiedSet::ConfigurationErrors)]
    #[case::unconfirmed_approvals(NotifiedSet::UnconfirmedApprovals)]
    fn set_notified_once_until_changed(#[case] set: NotifiedSet) {
        let mut document = StateDocument::default();
        let first = errors(&["approvals[0] (line 2): patch is invalid"]);
        let changed = errors(&["approvals[0] (line 2): patch is invalid", "approvals[1] (line 6): namespaces is empty"]);

        let before = document.unnotified(set, &first, "scan-a", at(0), TTL);
        document.record_set(set, &first, at(0));
        let same_again = document.unnotified(set, &first, "scan-b", at(1), TTL);
        let after_change = document.unnotified(set, &changed, "scan-b", at(1), TTL);

        assert!(before);
        assert!(!same_again);
        assert!(after_change);
        assert!(!document.unnotified(set, &[], "scan-a", at(0), TTL), "an empty set is never notified");
    }

    #[rstest]
    #[case::configuration_errors(NotifiedSet::ConfigurationErrors)]
    #[case::unconfirmed_approvals(NotifiedSet::UnconfirmedApprovals)]
    fn set_cleared_is_notified_again(#[case] set: NotifiedSet) {
        let mut document = StateDocument::default();
        let texts = errors(&["approvals document is invalid"]);
        document.record_set(set, &texts, at(0));

        let cleared = document.clear_set(set);
        let cleared_twice = document.clear_set(set);

        assert!(cleared);
        assert!(!cleared_twice, "nothing to clear costs no write");
        assert!(document.unnotified(set, &texts, "scan-b", at(1), TTL));
    }

    #[rstest]
    #[case::configuration_errors(NotifiedSet::ConfigurationErrors)]
    #[case::unconfirmed_approvals(NotifiedSet::UnconfirmedApprovals)]
    fn set_live_claim_of_other_scan_blocks(#[case] set: NotifiedSet) {
        let mut document = StateDocument::default();
        let texts = errors(&["approvals document is invalid"]);
        document.claim("scan-a", &BTreeSet::new(), at(0), TTL);
        document.claim_set(set, "scan-a", &texts);

        assert!(!document.unnotified(set, &texts, "scan-b", at(1), TTL));
        assert!(document.unnotified(set, &texts, "scan-a", at(1), TTL), "a scan's own claim does not block it");
        assert!(document.unnotified(set, &texts, "scan-b", at(16), TTL), "an expired claim is ignored");
        document.release("scan-a");
        assert!(document.unnotified(set, &texts, "scan-b", at(1), TTL), "a released claim is ignored");
    }

    #[test]
    fn notified_sets_are_independent() {
        let mut document = StateDocument::default();
        let texts = errors(&["docker.io/mojaloop/quoting-service:v10.4.0.9-patch: tag missing"]);
        document.record_set(NotifiedSet::UnconfirmedApprovals, &texts, at(0));
        document.claim("scan-a", &BTreeSet::new(), at(0), TTL);
        document.claim_set(NotifiedSet::UnconfirmedApprovals, "scan-a", &errors(&["claimed"]));

        assert!(document.unnotified(NotifiedSet::ConfigurationErrors, &texts, "scan-b", at(1), TTL));
        assert!(document.unnotified(NotifiedSet::ConfigurationErrors, &errors(&["claimed"]), "scan-b", at(1), TTL));
        assert!(!document.clear_set(NotifiedSet::ConfigurationErrors));
        assert!(!document.unnotified(NotifiedSet::UnconfirmedApprovals, &texts, "scan-b", at(1), TTL), "clearing the other set keeps this one");
    }

    #[test]
    fn notified_sets_round_trip() {
        let mut document = StateDocument::default();
        document.record_set(NotifiedSet::ConfigurationErrors, &errors(&["approvals[0] (line 2): bad"]), at(0));
        document.record_set(NotifiedSet::UnconfirmedApprovals, &errors(&["r:p: tag missing"]), at(0));
        document.claim("scan-a", &BTreeSet::new(), at(0), TTL);
        document.claim_set(NotifiedSet::ConfigurationErrors, "scan-a", &errors(&["x"]));
        document.claim_set(NotifiedSet::UnconfirmedApprovals, "scan-a", &errors(&["y"]));

        let text = serde_json::to_string(&document).unwrap();
        let parsed: StateDocument = serde_json::from_str(&text).unwrap();
        let older: StateDocument = serde_json::from_str(r#"{"announced": [], "claims": [{"scanId": "a", "claimedAt": "2025-01-01T12:00:00Z", "patches": []}]}"#).unwrap();

        assert!(text.contains(r#""notifiedConfigurationErrors":{"errors":["approvals[0] (line 2): bad"]"#), "{text}");
        assert!(text.contains(r#""notifiedUnconfirmedApprovals":{"errors":["r:p: tag missing"]"#), "{text}");
        assert!(text.contains(r#""configurationErrors":["x"]"#), "{text}");
        assert!(text.contains(r#""unconfirmedApprovals":["y"]"#), "{text}");
        assert_eq!(parsed, document);
        assert_eq!(older.notified_configuration_errors, None);
        assert_eq!(older.notified_unconfirmed_approvals, None);
        assert!(older.claims[0].configuration_errors.is_empty());
        assert!(older.claims[0].unconfirmed_approvals.is_empty());
    }

    #[test]
    fn state_without_last_good_approvals_parses() {
        let parsed: StateDocument = serde_json::from_str(r#"{"announced": [], "claims": []}"#).unwrap();
        let text = serde_json::to_string(&StateDocument::default()).unwrap();

        assert_eq!(parsed.last_good_approvals, None);
        assert!(!text.contains("lastGoodApprovals"), "{text}");
    }

    /// Starts a fake API server whose state ConfigMap accepts a replace only after
    /// `failures` replaces were rejected with `status`. Returns a client and the replace counter.
    async fn fake_api_server(status: u16, failures: usize) -> (kube::Client, Arc<AtomicUsize>) {
        let replaces = Arc::new(AtomicUsize::new(0));
        let counter = replaces.clone();
        let config_map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP_NAME, "namespace": "ns", "resourceVersion": "1"},
            "data": {CONFIGMAP_KEY: "{}"},
        });
        let app = Router::new().route(
            "/api/v1/namespaces/ns/configmaps/image-patch-state",
            get(move || {
                let config_map = config_map.clone();
                async move { axum::Json(config_map) }
            })
            .put(move |body: Bytes| {
                let number = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if number < failures {
                        let failure = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": "injected", "code": status});
                        return (StatusCode::from_u16(status).unwrap(), axum::Json(failure));
                    }
                    (StatusCode::OK, axum::Json(serde_json::from_slice(&body).unwrap()))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // kube builds a TLS setup even for http, and two rustls providers are compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        (kube::Client::try_from(config).unwrap(), replaces)
    }

    fn retry() -> RetryPolicy {
        RetryPolicy { attempts: 3, backoff: Duration::from_millis(10), max_retry_after: Duration::ZERO }
    }

    fn confirm_one(document: &mut StateDocument) -> bool {
        document.confirm("scan-a", &BTreeMap::from([(key("v1.0.0.1-patch"), None)]), at(0));
        true
    }

    #[rstest]
    #[case::server_error_then_stored(500, 2, true, 3)]
    #[case::server_error_on_every_attempt(500, 100, false, 3)]
    #[case::too_many_requests_then_stored(429, 1, true, 2)]
    #[case::forbidden_not_retried(403, 100, false, 1)]
    #[tokio::test]
    async fn update_with_retry_outcomes(#[case] status: u16, #[case] failures: usize, #[case] stored: bool, #[case] expected_replaces: usize) {
        let (client, replaces) = fake_api_server(status, failures).await;
        let store = StateStore::new(client, "ns");

        let result = store.update_with_retry(&retry(), confirm_one).await;

        assert_eq!(result.is_ok(), stored, "{result:?}");
        assert_eq!(replaces.load(Ordering::SeqCst), expected_replaces);
        if let Ok(document) = result {
            assert_eq!(document.announced.len(), 1);
        }
    }
}
