//! The approvals a scan uses: the document of the approvals ConfigMap when it parses,
//! otherwise the last document that parsed, which each scan records in the state
//! ConfigMap. A document that cannot be parsed is a configuration error, yet the scan
//! goes on with the fallback, so that an operator's typo stops no notice and no report.

use chrono::Utc;
use common::approvals::{CONFIGMAP_KEY as APPROVALS_KEY, CONFIGMAP_NAME as APPROVALS_NAME};
use common::{Approvals, EntryError};

use crate::configmap::ConfigMapStore;
use crate::state::{self, StateStore};

/// The approvals in force for one scan.
pub struct LoadedApprovals {
    /// The approvals of the current document, or of the fallback when it cannot be parsed.
    pub approvals: Approvals,
    /// Invalid entries of the document in use, skipped.
    pub entry_errors: Vec<EntryError>,
    /// The text of the current document, which auto-approval edits.
    pub document: String,
    /// Set when the current document cannot be parsed.
    pub unparsable: Option<UnparsableDocument>,
    /// State ConfigMap faults while recording the document, retried by the next scan.
    pub state_errors: Vec<String>,
}

/// An approvals document that cannot be parsed, and the approvals used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsableDocument {
    /// The ConfigMap, key and parser error, with line and column when the parser gives them.
    pub error: String,
    /// The approvals used instead, such as "the last good approvals, recorded at …".
    pub fallback: String,
}

impl UnparsableDocument {
    /// Formats the error and its consequences for the report.
    pub fn report_text(&self) -> String {
        format!(
            "{}. This scan used {} and approved no patch automatically; fix the document, and the next scan uses it.",
            self.error, self.fallback
        )
    }

    /// Formats a one-line summary for the Slack notice, which points to the report for the parser error.
    pub fn notice_text(&self, namespace: &str) -> String {
        format!(
            "ConfigMap {namespace}/{APPROVALS_NAME} cannot be parsed, so this scan used {} and approved nothing automatically. ConfigMap {namespace}/{} has the error.",
            self.fallback,
            crate::report::CONFIGMAP_NAME
        )
    }
}

/// Reads the approvals ConfigMap and returns the approvals for this scan.
///
/// A document that parses is recorded as the last good one in the state ConfigMap,
/// unless this is a dry run or it is recorded already. A document that cannot be parsed
/// is logged as an error, and the last good document is used, or no approvals when none
/// was recorded. Only a failure to read the approvals ConfigMap is returned as an error.
pub async fn load(approvals_store: &ConfigMapStore, state: &StateStore, namespace: &str, dry_run: bool) -> Result<LoadedApprovals, kube::Error> {
    let document = approvals_store.read().await?.data.get(APPROVALS_KEY).cloned().unwrap_or_default();
    let parse_error = match Approvals::parse(&document) {
        Ok((approvals, entry_errors)) => {
            let mut loaded = LoadedApprovals { approvals, entry_errors, document, unparsable: None, state_errors: Vec::new() };
            if !dry_run {
                record_good_document(state, &mut loaded).await;
            }
            return Ok(loaded);
        }
        Err(error) => error,
    };

    let error = format!("ConfigMap {namespace}/{APPROVALS_NAME}, key {APPROVALS_KEY}: {parse_error}");
    let (approvals, entry_errors, fallback) = read_last_good(state).await;
    tracing::error!(
        namespace,
        configmap = APPROVALS_NAME,
        key = APPROVALS_KEY,
        error = %parse_error,
        fallback = %fallback,
        "approvals document cannot be parsed; the scan goes on with the fallback approvals, approves nothing automatically and exits with status 2"
    );
    Ok(LoadedApprovals { approvals, entry_errors, document, unparsable: Some(UnparsableDocument { error, fallback }), state_errors: Vec::new() })
}

async fn record_good_document(state: &StateStore, loaded: &mut LoadedApprovals) {
    let document = loaded.document.as_str();
    let result = state.update_with_retry(&state::UPDATE_RETRY, |recorded| recorded.record_good_approvals(document, Utc::now())).await;
    if let Err(error) = result {
        tracing::warn!(configmap = state::CONFIGMAP_NAME, %error, "cannot record the approvals document as the last good one; the next scan records it");
        loaded.state_errors.push(format!("last good approvals not recorded: {error}"));
    }
}

/// Returns the approvals of the last good document, its invalid entries, and a
/// description of what was used for the report.
async fn read_last_good(state: &StateStore) -> (Approvals, Vec<EntryError>, String) {
    let recorded = match state.read().await {
        Ok(document) => document.last_good_approvals,
        Err(error) => {
            tracing::warn!(configmap = state::CONFIGMAP_NAME, %error, "cannot read the last good approvals; the scan uses no approvals");
            return (Approvals::empty(), Vec::new(), format!("no approvals, because the last good document cannot be read ({error})"));
        }
    };
    let Some(recorded) = recorded else {
        return (Approvals::empty(), Vec::new(), "no approvals, because no scan has recorded a document that parsed".to_string());
    };
    match Approvals::parse(&recorded.document) {
        Ok((approvals, entry_errors)) => (approvals, entry_errors, format!("the last good approvals, recorded at {}", recorded.recorded_at.to_rfc3339())),
        // Possible only after an upgrade that made the parser stricter.
        Err(error) => (
            Approvals::empty(),
            Vec::new(),
            format!("no approvals, because the last good document in ConfigMap {} cannot be parsed either ({error})", state::CONFIGMAP_NAME),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsable_document_texts() {
        let unparsable = UnparsableDocument {
            error: "ConfigMap image-patch-system/image-patch-approvals, key approvals.yaml: approvals document is invalid: did not find expected node content at line 1 column 12".into(),
            fallback: "the last good approvals, recorded at 2025-01-01T00:00:00+00:00".into(),
        };

        let report = unparsable.report_text();
        let notice = unparsable.notice_text("image-patch-system");

        assert!(report.contains("at line 1 column 12"), "{report}");
        assert!(report.contains("used the last good approvals, recorded at 2025-01-01"), "{report}");
        assert!(report.contains("approved no patch automatically"), "{report}");
        assert!(notice.starts_with("ConfigMap image-patch-system/image-patch-approvals cannot be parsed"), "{notice}");
        assert!(notice.contains("image-patch-system/image-patch-report"), "{notice}");
        assert!(!notice.contains("line 1"), "{notice}");
    }
}
