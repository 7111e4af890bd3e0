//! The approvals document as written: serde types for reading single entries and for
//! writing the document back after the scanner's auto policy adds an approval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use super::{DocumentError, Mode};

/// One entry of the `approvals` list, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalEntry {
    /// Any spelling that normalizes to the repository (`mojaloop/quoting-service`).
    pub image: String,
    /// A tag of the release line, usually the one the chart names (`v10.4.0`).
    pub version: String,
    /// The approved patch tag, a newer patch of `version`'s line (`v10.4.0.2-patch`).
    pub patch: String,
    /// Exact digest of the patch (`sha256:<64 lowercase hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Namespaces in scope; absent means every opted-in namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// The approver, shown in notices and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One entry of the `policies` list, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyEntry {
    /// Glob over image names (`mojaloop/*`), normalized like an image name.
    pub image: String,
    /// Scheme name; absent means `patch-suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The word that `suffix-counter` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The pattern of the `regex` scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Notify or auto; absent means notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// A whole approvals document, as written.
///
/// Reading a document into this type fails on the first invalid entry. Use
/// `Approvals::parse` to read a document entry by entry, and [`append_approval`] to add
/// an approval while keeping every other entry as it is, valid or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    /// The `approvals` list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalEntry>,
    /// The `policies` list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyEntry>,
    /// The `registries` mapping, alias to source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registries: BTreeMap<String, String>,
}

impl Document {
    /// Serializes the document to YAML.
    pub fn to_yaml(&self) -> Result<String, DocumentError> {
        serde_yaml_ng::to_string(self).map_err(|error| DocumentError { message: format!("cannot serialize the document: {error}") })
    }
}

/// Appends `entry` to the `approvals` list of `document` and returns the new text.
///
/// The other entries are kept as values, including invalid ones, so an operator's typo
/// stays visible instead of being dropped. Comments and formatting are not kept, because
/// the document is written back from parsed values.
pub fn append_approval(document: &str, entry: &ApprovalEntry) -> Result<String, DocumentError> {
    let mut root: Value = serde_yaml_ng::from_str(document).map_err(DocumentError::from_yaml)?;
    if root.is_null() {
        root = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(sections) = &mut root else {
        return Err(DocumentError { message: super::NOT_A_MAPPING.to_owned() });
    };

    let approvals = sections.entry(Value::from("approvals")).or_insert(Value::Null);
    if approvals.is_null() {
        *approvals = Value::Sequence(Vec::new());
    }
    let Value::Sequence(approvals) = approvals else {
        return Err(DocumentError { message: "approvals must be a list; fix it before an approval can be added".to_owned() });
    };
    let entry = serde_yaml_ng::to_value(entry).map_err(|error| DocumentError { message: format!("cannot serialize the approval: {error}") })?;
    approvals.push(entry);

    serde_yaml_ng::to_string(&root).map_err(|error| DocumentError { message: format!("cannot serialize the document: {error}") })
}
