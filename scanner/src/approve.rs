//! The `auto` policy: the scanner approves new patches itself by editing the approvals
//! document, with a write conditioned on the `resourceVersion` it read.
//!
//! A repository line that has no approval gets a new entry. A line whose approval names
//! an older patch gets that entry raised to the new patch, because a second entry for the
//! same line would conflict with the first and be skipped. Entries at or above the new
//! patch are left alone.

use std::collections::BTreeMap;

use common::approvals::{ApprovalEntry, CONFIGMAP_KEY, DocumentError, append_approval};
use common::{Approvals, Repository};
use serde_yaml_ng::Value;

use crate::configmap::{ConfigMapStore, Written};
use crate::state::PatchKey;

/// Attempts of the conditional write before auto-approval gives up for this scan.
const WRITE_ATTEMPTS: usize = 10;

/// A patch that the `auto` policy approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApproval {
    /// The source repository.
    pub repository: Repository,
    /// A running tag of the release line.
    pub version: String,
    /// The patch tag.
    pub patch: String,
    /// The patch's digest.
    pub digest: Option<String>,
    /// The `approvedBy` value: the policy that approved.
    pub approved_by: String,
}

impl AutoApproval {
    /// Returns the state key of the approved patch.
    pub fn key(&self) -> PatchKey {
        PatchKey { repository: self.repository.to_string(), patch: self.patch.clone() }
    }
}

/// A failure of auto-approval. The patches are then announced as available, not approved.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The API server failed.
    #[error("approvals ConfigMap: {0}")]
    Api(#[from] kube::Error),
    /// The document cannot be edited.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// Other writers kept changing the ConfigMap.
    #[error("approvals ConfigMap changed on each of {WRITE_ATTEMPTS} write attempts")]
    Contended,
}

/// The outcome of auto-approval.
#[derive(Debug, Clone, Default)]
pub struct Approved {
    /// The approvals after the write.
    pub approvals: Approvals,
    /// The patches approved by this scan.
    pub approved: Vec<AutoApproval>,
}

/// Adds the `requested` approvals to the approvals ConfigMap, re-reading on conflict.
pub async fn approve(store: &ConfigMapStore, requested: &[AutoApproval]) -> Result<Approved, ApproveError> {
    for _ in 0..WRITE_ATTEMPTS {
        let versioned = store.read().await?;
        let document = versioned.data.get(CONFIGMAP_KEY).cloned().unwrap_or_default();
        let (approvals, _) = Approvals::parse(&document)?;
        let (text, approved) = edit_document(&document, &approvals, requested)?;
        if approved.is_empty() {
            return Ok(Approved { approvals, approved });
        }

        let mut data = versioned.data.clone();
        data.insert(CONFIGMAP_KEY.to_string(), text.clone());
        match store.write(data, &versioned).await? {
            Written::Stored(_) => {
                let (approvals, _) = Approvals::parse(&text)?;
                for approval in &approved {
                    tracing::info!(repository = %approval.repository, patch = %approval.patch, "approved by the auto policy");
                }
                return Ok(Approved { approvals, approved });
            }
            Written::Conflict => tracing::info!(configmap = store.name(), "approvals changed meanwhile, re-reading"),
        }
    }
    Err(ApproveError::Contended)
}

/// Returns the document with the `requested` approvals in force, and those it had to add or raise.
pub fn edit_document(document: &str, approvals: &Approvals, requested: &[AutoApproval]) -> Result<(String, Vec<AutoApproval>), DocumentError> {
    let mut text = document.to_string();
    let mut applied = Vec::new();
    // Raises of existing entries, by document index, applied in one pass at the end.
    let mut raises: BTreeMap<usize, &AutoApproval> = BTreeMap::new();

    for approval in requested {
        let scheme = approvals.scheme_for(&approval.repository);
        let Some(new_version) = scheme.parse(&approval.patch) else {
            continue;
        };
        let existing: Vec<_> = approvals
            .approvals()
            .iter()
            .filter(|entry| entry.repository == approval.repository && entry.patch_version.line == new_version.line)
            .collect();
        if existing.iter().any(|entry| entry.patch_version.level >= new_version.level) {
            continue;
        }
        if existing.is_empty() {
            let entry = ApprovalEntry {
                image: approval.repository.to_string(),
                version: approval.version.clone(),
                patch: approval.patch.clone(),
                digest: approval.digest.clone(),
                approved_by: Some(approval.approved_by.clone()),
                ..ApprovalEntry::default()
            };
            text = append_approval(&text, &entry)?;
        } else {
            for entry in existing {
                raises.insert(entry.index, approval);
            }
        }
        applied.push(approval.clone());
    }

    if !raises.is_empty() {
        text = raise_entries(&text, &raises)?;
    }
    Ok((text, applied))
}

/// Sets `patch`, `digest` and `approvedBy` of the `approvals` entries at the given indexes.
fn raise_entries(document: &str, raises: &BTreeMap<usize, &AutoApproval>) -> Result<String, DocumentError> {
    let invalid = |message: String| DocumentError { message };
    let mut root: Value = serde_yaml_ng::from_str(document).map_err(|error| invalid(error.to_string()))?;
    let entries = root
        .get_mut("approvals")
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| invalid("approvals must be a list".to_string()))?;
    for (&index, approval) in raises {
        let entry = entries
            .get_mut(index)
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| invalid(format!("approvals[{index}] is not a mapping")))?;
        entry.insert(Value::from("patch"), Value::from(approval.patch.clone()));
        match &approval.digest {
            Some(digest) => entry.insert(Value::from("digest"), Value::from(digest.clone())),
            None => entry.remove("digest"),
        };
        entry.insert(Value::from("approvedBy"), Value::from(approval.approved_by.clone()));
    }
    serde_yaml_ng::to_string(&root).map_err(|error| invalid(format!("cannot serialize the document: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(patch: &str) -> AutoApproval {
        AutoApproval {
            repository: Repository::new("docker.io", "mojaloop/quoting-service"),
            version: "v10.4.0".into(),
            patch: patch.into(),
            digest: Some(format!("sha256:{}", "b".repeat(64))),
            approved_by: "policy auto for docker.io/mojaloop/*".into(),
        }
    }

    fn edit(document: &str, patch: &str) -> (String, Vec<AutoApproval>) {
        let (approvals, _) = Approvals::parse(document).unwrap();
        edit_document(document, &approvals, &[requested(patch)]).unwrap()
    }

    #[test]
    fn auto_approval_appends_new_line() {
        let document = "policies:\n  - image: mojaloop/*\n    mode: auto\n";

        let (text, applied) = edit(document, "v10.4.0.2-patch");

        assert_eq!(applied.len(), 1);
        let (approvals, errors) = Approvals::parse(&text).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(approvals.approvals().len(), 1);
        assert_eq!(approvals.approvals()[0].patch, "v10.4.0.2-patch");
        assert_eq!(approvals.approvals()[0].approved_by.as_deref(), Some("policy auto for docker.io/mojaloop/*"));
        assert_eq!(approvals.policies().len(), 1);
    }

    #[test]
    fn auto_approval_raises_older_entry() {
        let document = "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.1-patch\n    namespaces: [mojaloop]\n    note: keep me\n";

        let (text, applied) = edit(document, "v10.4.0.2-patch");

        assert_eq!(applied.len(), 1);
        let (approvals, errors) = Approvals::parse(&text).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let entry = &approvals.approvals()[0];
        assert_eq!(approvals.approvals().len(), 1);
        assert_eq!(entry.patch, "v10.4.0.2-patch");
        assert_eq!(entry.namespaces.as_deref(), Some(&["mojaloop".to_string()][..]));
        assert_eq!(entry.note.as_deref(), Some("keep me"));
        assert!(entry.digest.is_some());
    }

    #[test]
    fn auto_approval_keeps_newer_entry() {
        let document = "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.3-patch\n";

        let (text, applied) = edit(document, "v10.4.0.2-patch");

        assert!(applied.is_empty());
        assert_eq!(text, document);
    }

    #[test]
    fn auto_approval_keeps_broken_entries() {
        let document = "approvals:\n  - image: mojaloop/other\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n    typo: x\n";

        let (text, applied) = edit(document, "v10.4.0.2-patch");

        assert_eq!(applied.len(), 1);
        assert!(text.contains("typo: x"));
        let (approvals, errors) = Approvals::parse(&text).unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(approvals.approvals().len(), 1);
    }
}
