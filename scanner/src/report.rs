//! The scan report: one row per container, printed as a table or JSON and stored in the
//! ConfigMap `image-patch-report` (keys `report.json` and `report.txt`) for `kubectl get`.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::configmap::{ConfigMapStore, Written};
use crate::discovery::WorkloadId;
use crate::notice::RolloutEntry;
use crate::rollout::SkippedRollout;
use crate::state::PatchKey;

/// Name of the report ConfigMap.
pub const CONFIGMAP_NAME: &str = "image-patch-report";
/// Attempts of the conditional write before the report of this scan is given up.
const WRITE_ATTEMPTS: usize = 5;

/// The status of one container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// No newer patch of the running line.
    #[serde(rename = "up to date")]
    UpToDate,
    /// A newer patch exists and is not approved for this workload.
    #[serde(rename = "patch available")]
    PatchAvailable,
    /// A newer patch is approved, and the workload does not run it yet.
    #[serde(rename = "approved")]
    Approved,
    /// This scan changed the workload to the approved patch.
    #[serde(rename = "rolled out")]
    RolledOut,
    /// A dry run found that rollout would change the workload to the approved patch.
    #[serde(rename = "would roll out")]
    WouldRollOut,
    /// The image is pinned by a digest, with no patch-versioned tag beside it, so it is never rewritten.
    #[serde(rename = "pinned by digest")]
    PinnedByDigest,
    /// The tag is outside the repository's versioning scheme (or the reference is invalid).
    #[serde(rename = "not a patch-versioned tag")]
    NotPatchVersioned,
    /// The registry gave no complete tag list, or no manifest digest for the newest patch, so the
    /// state is unknown. Also the status of an image whose approval the registry does not
    /// confirm (a missing patch tag, or another digest), which rollout leaves unchanged.
    #[serde(rename = "registry error")]
    RegistryError,
}

impl Status {
    /// Returns the status as the table and the JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::UpToDate => "up to date",
            Status::PatchAvailable => "patch available",
            Status::Approved => "approved",
            Status::RolledOut => "rolled out",
            Status::WouldRollOut => "would roll out",
            Status::PinnedByDigest => "pinned by digest",
            Status::NotPatchVersioned => "not a patch-versioned tag",
            Status::RegistryError => "registry error",
        }
    }
}

/// One container of one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The workload.
    #[serde(flatten)]
    pub workload: WorkloadId,
    /// The container.
    pub container: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The image as written.
    pub image: String,
    /// The status.
    pub status: Status,
    /// The newest patch of the running line, when there is a newer one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_patch: Option<String>,
    /// The newest patch's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// More about the status: the approved patch, the registry's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of the notice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeSummary {
    /// Messages that Slack accepted (or that were printed, in a dry run).
    pub messages_sent: usize,
    /// Patches announced by this scan.
    pub announced: Vec<PatchKey>,
    /// The reason the rest was not announced. The next scan retries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of one scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The cluster name.
    pub cluster: String,
    /// When the scan started.
    pub scanned_at: DateTime<Utc>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The namespaces scanned.
    pub namespaces: Vec<String>,
    /// One row per container.
    pub rows: Vec<Row>,
    /// The approvals document that could not be parsed, with the parser's error and the
    /// approvals this scan used instead. The binary exits with status 2 when it is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_error: Option<String>,
    /// Invalid approvals entries, skipped.
    pub approval_errors: Vec<String>,
    /// Repositories whose tag list or digest could not be read, with the error.
    pub registry_errors: BTreeMap<String, String>,
    /// Namespaces that could not be read, with the error.
    pub discovery_errors: BTreeMap<String, String>,
    /// Patches approved by the `auto` policy in this scan.
    pub auto_approved: Vec<PatchKey>,
    /// Rollouts of this scan.
    pub rollouts: Vec<RolloutEntry>,
    /// Workloads that rollout left unchanged because of their namespace.
    pub rollouts_skipped: Vec<SkippedRollout>,
    /// The notice.
    pub notice: NoticeSummary,
    /// Other faults of this scan (state, approvals write), each retried by the next scan.
    pub errors: Vec<String>,
}

impl Report {
    /// Counts the rows of each status.
    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|row| row.status == status).count()
    }

    /// Renders the report as a table.
    pub fn to_table(&self) -> String {
        let headers = ["NAMESPACE", "KIND", "NAME", "CONTAINER", "IMAGE", "STATUS", "NEWEST PATCH"];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.workload.namespace.clone(),
                    row.workload.kind.to_string(),
                    row.workload.name.clone(),
                    if row.init { format!("{} (init)", row.container) } else { row.container.clone() },
                    row.image.clone(),
                    row.status.as_str().to_string(),
                    row.newest_patch.clone().unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for line in &cells {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }

        let mut table = String::new();
        let headers = headers.map(str::to_string);
        for line in std::iter::once(&headers).chain(&cells) {
            let padded: Vec<String> = line.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            let _ = writeln!(table, "{}", padded.join("  ").trim_end());
        }

        let _ = writeln!(table);
        let _ = writeln!(table, "Cluster {}, scanned at {}{}", self.cluster, self.scanned_at.to_rfc3339(), if self.dry_run { " (dry run)" } else { "" });
        if let Some(error) = &self.configuration_error {
            let _ = writeln!(table, "configuration error: {error}");
        }
        for (repository, error) in &self.registry_errors {
            let _ = writeln!(table, "registry error: {repository}: {error}");
        }
        for (namespace, error) in &self.discovery_errors {
            let _ = writeln!(table, "discovery error: namespace {namespace}: {error}");
        }
        for error in &self.approval_errors {
            let _ = writeln!(table, "invalid approval skipped: {error}");
        }
        for rollout in &self.rollouts {
            let outcome = match &rollout.error {
                Some(error) => format!("rollout failed: {error}"),
                None if rollout.dry_run => "would roll out (dry run)".to_string(),
                None => "rolled out".to_string(),
            };
            let _ = writeln!(table, "{}: {outcome}: {}", rollout.workload, rollout.changes.join("; "));
        }
        for skipped in &self.rollouts_skipped {
            let _ = writeln!(table, "rollout skipped: {}", skipped.describe());
        }
        let _ = writeln!(table, "notice: {} message(s), {} patch(es) announced", self.notice.messages_sent, self.notice.announced.len());
        if let Some(error) = &self.notice.error {
            let _ = writeln!(table, "notice error: {error}");
        }
        for error in &self.errors {
            let _ = writeln!(table, "error: {error}");
        }
        table
    }

    /// Renders the report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report always serializes")
    }
}

/// Stores `report` in the report ConfigMap; the last scan's report wins.
// NOTE: a ConfigMap stores at most 1 MiB, which a report of several thousand containers can exceed.
pub async fn store(store: &ConfigMapStore, report: &Report) -> Result<(), kube::Error> {
    let data = BTreeMap::from([("report.json".to_string(), report.to_json()), ("report.txt".to_string(), report.to_table())]);
    for _ in 0..WRITE_ATTEMPTS {
        let versioned = store.read().await?;
        if let Written::Stored(_) = store.write(data.clone(), &versioned).await? {
            return Ok(());
        }
    }
    tracing::warn!(configmap = CONFIGMAP_NAME, attempts = WRITE_ATTEMPTS, "report not stored because the ConfigMap changed on each attempt; the next scan stores its own");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::WorkloadKind;

    fn report() -> Report {
        Report {
            cluster: "hub".into(),
            scanned_at: DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&Utc),
            dry_run: false,
            namespaces: vec!["mojaloop".into()],
            rows: vec![Row {
                workload: WorkloadId { namespace: "mojaloop".into(), kind: WorkloadKind::DaemonSet, name: "agent".into() },
                container: "agent".into(),
                init: false,
                image: "mojaloop/agent:v1.0.0".into(),
                status: Status::PatchAvailable,
                newest_patch: Some("v1.0.0.3-patch".into()),
                digest: None,
                detail: None,
            }],
            configuration_error: None,
            approval_errors: vec!["approvals[1] (line 7): unknown key".into()],
            registry_errors: BTreeMap::from([("127.0.0.1:1/x".to_string(), "HTTP 500".to_string())]),
            discovery_errors: BTreeMap::new(),
            auto_approved: Vec::new(),
            rollouts: Vec::new(),
            rollouts_skipped: Vec::new(),
            notice: NoticeSummary::default(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn report_table_lists_rows_and_errors() {
        let table = report().to_table();

        assert!(table.starts_with("NAMESPACE  KIND       NAME   CONTAINER  IMAGE"));
        assert!(table.contains("mojaloop   DaemonSet  agent  agent      mojaloop/agent:v1.0.0  patch available  v1.0.0.3-patch"));
        assert!(table.contains("registry error: 127.0.0.1:1/x: HTTP 500"));
        assert!(table.contains("invalid approval skipped: approvals[1] (line 7): unknown key"));
    }

    #[test]
    fn report_lists_skipped_rollouts() {
        let mut report = report();
        report.rollouts_skipped = vec![SkippedRollout {
            workload: WorkloadId { namespace: "payments".into(), kind: WorkloadKind::Deployment, name: "quoting".into() },
            changes: vec!["app: a:v1.0.0 → a:v1.0.0.1-patch".into()],
            reason: crate::rollout::SkipReason::Audit,
        }];

        let table = report.to_table();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();

        assert!(table.contains("rollout skipped: payments/Deployment/quoting: not rolled out, because namespace payments is in audit mode"), "{table}");
        assert_eq!(json["rolloutsSkipped"][0]["workload"]["namespace"], "payments");
        assert_eq!(json["rolloutsSkipped"][0]["reason"], "audit");
    }

    #[test]
    fn report_json_spells_statuses() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();

        assert_eq!(json["rows"][0]["status"], "patch available");
        assert_eq!(json["rows"][0]["kind"], "DaemonSet");
        assert_eq!(json["rows"][0]["newestPatch"], "v1.0.0.3-patch");
        assert_eq!(json["approvalErrors"][0], "approvals[1] (line 7): unknown key");
        assert_eq!(serde_json::to_value(Status::NotPatchVersioned).unwrap(), "not a patch-versioned tag");
        assert!(json.get("configurationError").is_none());
    }

    #[test]
    fn report_shows_configuration_error() {
        let mut report = report();
        report.configuration_error = Some("ConfigMap image-patch-system/image-patch-approvals cannot be parsed".into());

        let table = report.to_table();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();

        assert!(table.contains("configuration error: ConfigMap image-patch-system/image-patch-approvals cannot be parsed"), "{table}");
        assert_eq!(json["configurationError"], "ConfigMap image-patch-system/image-patch-approvals cannot be parsed");
    }
}
