//! Rollout: changes running workloads so that they run their approved patch now, instead
//! of at the next deploy. The decision is the webhook's own, [`common::decide`], so a
//! workload is changed exactly when the webhook would rewrite it at admission.
//!
//! - `patch` sets the image fields of the pod template (of a bare Pod, the pod spec) with
//!   a strategic merge patch keyed by container name, and records the images it had
//!   before in the annotation [`ROLLED_OUT_FROM_ANNOTATION`].
//! - `restart` sets [`RESTARTED_AT_ANNOTATION`] on the pod template of Deployments,
//!   StatefulSets and DaemonSets, so that their controllers create new pods, which the
//!   webhook rewrites.
//!
//! An image pinned by a digest alone is never changed, because `decide` keeps it. An image
//! with a tag and a digest is changed like the webhook changes it: to the approved tag
//! with the approval's digest, or with no digest when the approval has none. Jobs are
//! never changed, because their pod template is immutable.
//! Only workloads that discovery found, in opted-in namespaces, are ever planned. Like the
//! webhook, rollout leaves alone namespaces in audit mode, `kube-system` and the
//! controller's own namespace ([`NamespaceFilter`]). Their workloads are reported as
//! skipped ([`SkippedRollout`]) instead of changed.
//!
//! An approval is rolled out only after the registry confirmed it ([`check_approvals`]).
//! The repository's tag list, which the scan reads once, must contain the patch tag.
//! An approval with a `digest` must also get that digest when its patch tag is resolved,
//! because a container runtime pulls by digest and would otherwise run whatever image
//! the digest names. The webhook cannot check either, because it never calls a registry,
//! so it still rewrites to an unconfirmed approval at the next deploy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use common::{Approval, Approvals, Decision, Repository};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::discovery::{SelectedNamespace, WorkloadId, WorkloadImage, WorkloadKind};
use crate::notice::RolloutEntry;
use crate::options::RolloutMode;
use crate::registry::{Credential, RegistryClient};
use crate::report::{Row, Status};

/// Annotation on a patched workload: JSON of container name to the image it had before.
pub const ROLLED_OUT_FROM_ANNOTATION: &str = "patches.mojaloop.io/rolled-out-from";
/// Pod-template annotation that `restart` sets to the time of the restart.
pub const RESTARTED_AT_ANNOTATION: &str = "patches.mojaloop.io/restartedAt";
/// Namespace label whose value [`AUDIT_MODE`] makes the webhook only warn what it would rewrite.
pub const MODE_LABEL: &str = "patches.mojaloop.io/mode";
/// The value of [`MODE_LABEL`] for audit mode.
pub const AUDIT_MODE: &str = "audit";
/// The namespace that the webhook never patches, besides the controller's own.
pub const KUBE_SYSTEM: &str = "kube-system";

/// A container image change that rollout makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerChange {
    /// The container.
    pub container: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The image as it is.
    pub from: String,
    /// The approved image.
    pub to: String,
    /// The index of the approval that names `to`.
    pub approval_index: usize,
}

/// The changes planned for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRollout {
    /// The workload.
    pub workload: WorkloadId,
    /// Its containers that are not at their approved patch.
    pub changes: Vec<ContainerChange>,
}

/// The reason that rollout leaves a namespace's workloads unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReason {
    /// The namespace is labelled `patches.mojaloop.io/mode=audit`, where the webhook only warns.
    Audit,
    /// `kube-system` or the controller's own namespace, where the webhook never rewrites.
    Protected,
}

/// The namespaces where rollout changes nothing, because the webhook does not rewrite
/// there either. The webhook configuration leaves them out of its enforcing webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceFilter {
    protected: BTreeSet<String>,
    audit: BTreeSet<String>,
}

impl NamespaceFilter {
    /// Creates the filter from the scanned namespaces' labels and the controller's namespace.
    pub fn new(namespaces: &[SelectedNamespace], controller_namespace: &str) -> Self {
        let protected = BTreeSet::from([KUBE_SYSTEM.to_string(), controller_namespace.to_string()]);
        let audit = namespaces
            .iter()
            .filter(|namespace| namespace.labels.get(MODE_LABEL).is_some_and(|mode| mode == AUDIT_MODE))
            .map(|namespace| namespace.name.clone())
            .collect();
        Self { protected, audit }
    }

    /// Returns why rollout skips `namespace`, or `None` when it may change workloads there.
    pub fn skip_reason(&self, namespace: &str) -> Option<SkipReason> {
        if self.protected.contains(namespace) {
            Some(SkipReason::Protected)
        } else if self.audit.contains(namespace) {
            Some(SkipReason::Audit)
        } else {
            None
        }
    }
}

/// A workload that needs changes but is not rolled out, because of its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRollout {
    /// The workload.
    pub workload: WorkloadId,
    /// `container: old image → new image`, one per container that rollout would change.
    pub changes: Vec<String>,
    /// The reason that rollout skips the namespace.
    pub reason: SkipReason,
}

impl SkippedRollout {
    /// Describes the skipped workload, the reason, and what the operator can do.
    pub fn describe(&self) -> String {
        let (workload, namespace) = (&self.workload, &self.workload.namespace);
        let changes = self.changes.join("; ");
        match self.reason {
            SkipReason::Audit => format!(
                "{workload}: not rolled out, because namespace {namespace} is in audit mode (label {MODE_LABEL}={AUDIT_MODE}): {changes}. Remove the label to have the next scan roll it out"
            ),
            SkipReason::Protected => format!(
                "{workload}: not rolled out, because the webhook never patches namespace {namespace}: {changes}. Change the image in the workload's own manifest instead"
            ),
        }
    }

    /// Logs the skip with the workload's namespace, kind and name as fields. A protected
    /// namespace is logged at warn, because only a mistaken label or `--namespace` selects it.
    pub fn log(&self) {
        let workload = &self.workload;
        match self.reason {
            SkipReason::Audit => tracing::info!(
                namespace = %workload.namespace,
                kind = %workload.kind,
                name = %workload.name,
                reason = "audit",
                "rollout skipped because the namespace is in audit mode. Remove its label patches.mojaloop.io/mode=audit to roll out"
            ),
            SkipReason::Protected => tracing::warn!(
                namespace = %workload.namespace,
                kind = %workload.kind,
                name = %workload.name,
                reason = "protected",
                "rollout skipped because the webhook never patches kube-system or the controller's namespace. Change the image in the workload's own manifest, or stop scanning the namespace"
            ),
        }
    }
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The workloads to change.
    pub rollouts: Vec<PlannedRollout>,
    /// The workloads that need changes in namespaces that `filter` skips.
    pub skipped: Vec<SkippedRollout>,
}

/// Plans the changes that bring `images` to their approved patches, and sets aside the
/// workloads in the namespaces that `filter` skips.
pub fn plan(images: &[WorkloadImage], approvals: &Approvals, filter: &NamespaceFilter) -> Plan {
    let mut planned: BTreeMap<WorkloadId, Vec<ContainerChange>> = BTreeMap::new();
    for image in images {
        if image.workload.kind == WorkloadKind::Job {
            continue;
        }
        if let Decision::Rewrite(rewrite) = common::decide(&image.image, &image.workload.namespace, approvals) {
            planned.entry(image.workload.clone()).or_default().push(ContainerChange {
                container: image.container.clone(),
                init: image.init,
                from: rewrite.from,
                to: rewrite.to,
                approval_index: rewrite.approval_index,
            });
        }
    }

    let mut plan = Plan { rollouts: Vec::new(), skipped: Vec::new() };
    for (workload, changes) in planned {
        let rollout = PlannedRollout { workload, changes };
        match filter.skip_reason(&rollout.workload.namespace) {
            Some(reason) => plan.skipped.push(SkippedRollout { changes: describe_changes(&rollout), workload: rollout.workload, reason }),
            None => plan.rollouts.push(rollout),
        }
    }
    plan
}

/// The reason that the registry does not confirm an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconfirmed {
    /// The repository's tag list does not contain the approved patch tag.
    MissingTag,
    /// The repository's tag list could not be read, so the patch tag may not exist.
    TagListUnavailable,
    /// The registry serves another digest for the patch tag.
    DigestMismatch {
        /// The approval's `digest`.
        approved: String,
        /// The digest that the registry serves for the patch tag.
        served: String,
    },
    /// The digest of the patch tag could not be resolved.
    DigestUnresolved {
        /// The approval's `digest`.
        approved: String,
        /// The lookup error.
        error: String,
    },
}

/// An approval that this scan does not roll out, because the registry does not confirm
/// that it serves the approved patch tag (and digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedApproval {
    /// The approval's index in the `approvals` list.
    pub index: usize,
    /// The approval's source repository.
    pub repository: Repository,
    /// The approved patch tag.
    pub patch: String,
    /// The reason.
    pub reason: Unconfirmed,
}

impl UnconfirmedApproval {
    /// Returns the key of the report's registry errors: `repository:patch`.
    pub fn report_key(&self) -> String {
        format!("{}:{}", self.repository, self.patch)
    }

    /// Describes why the approval is unconfirmed and what the operator can do.
    pub fn describe(&self) -> String {
        let (index, repository, patch) = (self.index, &self.repository, &self.patch);
        match &self.reason {
            Unconfirmed::MissingTag => format!(
                "approvals[{index}] ({repository}:{patch}): the registry has no tag {patch}, so the approval is not rolled out. The webhook still rewrites to it at the next deploy. Correct the approval's patch tag or push the image"
            ),
            Unconfirmed::TagListUnavailable => format!(
                "approvals[{index}] ({repository}:{patch}): cannot check that the registry has tag {patch}, because the repository's tag list could not be read. The approval is not rolled out, and the next scan checks it again"
            ),
            Unconfirmed::DigestMismatch { approved, served } => format!(
                "approvals[{index}] ({repository}:{patch}): approved digest {approved} does not match the registry's digest {served}; the approval is not rolled out until its digest is corrected"
            ),
            Unconfirmed::DigestUnresolved { approved, error } => format!(
                "approvals[{index}] ({repository}:{patch}): cannot verify the approved digest {approved}: {error}; the approval is not rolled out, and the next scan checks it again"
            ),
        }
    }

    /// Returns the text that the state compares to decide whether this approval was
    /// notified already. It names the repository, patch tag, reason and digests, but
    /// not the approval's index, which moves when an entry above it is added or removed,
    /// nor a lookup error, which may differ between scans of one registry outage.
    pub fn notice_key(&self) -> String {
        let (repository, patch) = (&self.repository, &self.patch);
        match &self.reason {
            Unconfirmed::MissingTag => format!("{repository}:{patch}: tag missing"),
            Unconfirmed::TagListUnavailable => format!("{repository}:{patch}: tag list unavailable"),
            Unconfirmed::DigestMismatch { approved, served } => format!("{repository}:{patch}: approved digest {approved}, registry digest {served}"),
            Unconfirmed::DigestUnresolved { approved, .. } => format!("{repository}:{patch}: approved digest {approved} unresolved"),
        }
    }

    /// Logs the approval with its index, repository and patch tag as fields.
    fn log(&self) {
        let (approval, repository, tag) = (self.index, &self.repository, &self.patch);
        match &self.reason {
            Unconfirmed::MissingTag => tracing::error!(
                approval,
                repository = %repository,
                tag = %tag,
                "the registry has no such patch tag, so the approval is not rolled out, but the webhook rewrites to it at the next deploy. Correct the approval's patch tag or push the image"
            ),
            Unconfirmed::TagListUnavailable => tracing::warn!(
                approval,
                repository = %repository,
                tag = %tag,
                "cannot check that the approved patch tag exists, because the repository's tag list could not be read. The approval is not rolled out and is left for the next scan"
            ),
            Unconfirmed::DigestMismatch { approved, served } => tracing::error!(
                approval,
                repository = %repository,
                tag = %tag,
                approved_digest = %approved,
                registry_digest = %served,
                "the approval's digest does not match the digest the registry serves for its patch tag; the approval is not rolled out"
            ),
            Unconfirmed::DigestUnresolved { approved, error } => tracing::warn!(
                approval,
                repository = %repository,
                tag = %tag,
                approved_digest = %approved,
                %error,
                "cannot resolve the digest of the approved patch tag; the approval is not rolled out and is left for the next scan"
            ),
        }
    }
}

/// Checks the approved patch tag against the repository's tag list from `tags`. Returns
/// `None` when the list contains it. A repository without a list, because its lookup
/// failed, is never confirmed.
fn check_patch_tag(approval: &Approval, tags: &HashMap<Repository, Arc<Vec<String>>>) -> Option<Unconfirmed> {
    match tags.get(&approval.repository) {
        None => Some(Unconfirmed::TagListUnavailable),
        Some(list) if !list.contains(&approval.patch) => Some(Unconfirmed::MissingTag),
        Some(_) => None,
    }
}

/// Checks every approval that `planned` uses against the registry and returns the ones it
/// does not confirm, each logged. The patch tag must be in its repository's tag list from
/// `tags`, which the scan read once for every repository that it plans changes for. An
/// approval with a `digest` also needs that digest when its patch tag is resolved, which
/// costs one manifest request for each such approval whose tag exists.
pub async fn check_approvals(
    registry: &RegistryClient,
    planned: &[PlannedRollout],
    approvals: &Approvals,
    tags: &HashMap<Repository, Arc<Vec<String>>>,
    credentials: &HashMap<Repository, Vec<Credential>>,
) -> Vec<UnconfirmedApproval> {
    let used: BTreeSet<usize> = planned.iter().flat_map(|rollout| rollout.changes.iter().map(|change| change.approval_index)).collect();
    let mut unconfirmed = Vec::new();
    for approval in approvals.approvals().iter().filter(|approval| used.contains(&approval.index)) {
        let reason = match (check_patch_tag(approval, tags), &approval.digest) {
            (Some(reason), _) => reason,
            (None, None) => continue,
            (None, Some(approved)) => {
                let repository_credentials = credentials.get(&approval.repository).map_or(&[][..], Vec::as_slice);
                match registry.manifest_digest(&approval.repository, &approval.patch, repository_credentials).await {
                    Ok(served) if served == *approved => continue,
                    Ok(served) => Unconfirmed::DigestMismatch { approved: approved.clone(), served },
                    Err(error) => Unconfirmed::DigestUnresolved { approved: approved.clone(), error: error.to_string() },
                }
            }
        };
        let approval = UnconfirmedApproval { index: approval.index, repository: approval.repository.clone(), patch: approval.patch.clone(), reason };
        approval.log();
        unconfirmed.push(approval);
    }
    unconfirmed
}

/// Removes the changes that use an unconfirmed approval. In `restart` mode a workload with any
/// such change is removed whole, because the webhook would rewrite every container of
/// its new pods, the unconfirmed one included.
pub fn without_unconfirmed(planned: Vec<PlannedRollout>, unconfirmed: &[UnconfirmedApproval], mode: RolloutMode) -> Vec<PlannedRollout> {
    let unconfirmed: BTreeSet<usize> = unconfirmed.iter().map(|approval| approval.index).collect();
    planned
        .into_iter()
        .filter_map(|mut rollout| {
            let uses_unconfirmed = rollout.changes.iter().any(|change| unconfirmed.contains(&change.approval_index));
            if uses_unconfirmed && mode == RolloutMode::Restart {
                return None;
            }
            rollout.changes.retain(|change| !unconfirmed.contains(&change.approval_index));
            (!rollout.changes.is_empty()).then_some(rollout)
        })
        .collect()
}

/// Marks the rows whose approval is unconfirmed as registry errors, with the reason as detail.
pub fn mark_unconfirmed_rows(rows: &mut [Row], unconfirmed: &[UnconfirmedApproval], approvals: &Approvals) {
    for row in rows {
        let Decision::Rewrite(rewrite) = common::decide(&row.image, &row.workload.namespace, approvals) else {
            continue;
        };
        if let Some(approval) = unconfirmed.iter().find(|approval| approval.index == rewrite.approval_index) {
            row.status = Status::RegistryError;
            row.detail = Some(approval.describe());
        }
    }
}

/// Returns the entries that [`apply`] would return if every patch succeeded, for a dry
/// run. A workload that cannot be changed in `mode` is left out, as `apply` leaves it.
pub fn preview(planned: &[PlannedRollout], mode: RolloutMode) -> Vec<RolloutEntry> {
    planned
        .iter()
        .filter(|rollout| patch_body(rollout, mode, chrono::Utc::now()).is_some())
        .map(|rollout| RolloutEntry { workload: rollout.workload.clone(), changes: describe_changes(rollout), error: None, dry_run: true })
        .collect()
}

/// Applies `planned` in `mode`, one workload at a time, and returns what happened.
/// A workload that cannot be changed in `mode` is left out.
pub async fn apply(client: &kube::Client, planned: &[PlannedRollout], mode: RolloutMode) -> Vec<RolloutEntry> {
    let mut entries = Vec::new();
    for rollout in planned {
        let Some(body) = patch_body(rollout, mode, chrono::Utc::now()) else {
            continue;
        };
        let workload = &rollout.workload;
        let result = send_patch(client, workload, &body).await;
        let changes = describe_changes(rollout);
        let error = match result {
            Ok(()) => {
                tracing::info!(namespace = %workload.namespace, kind = %workload.kind, name = %workload.name, ?mode, "rolled out approved patch");
                None
            }
            Err(error) => {
                tracing::warn!(namespace = %workload.namespace, kind = %workload.kind, name = %workload.name, %error, "rollout failed; the workload is left for the next scan");
                Some(error.to_string())
            }
        };
        entries.push(RolloutEntry { workload: workload.clone(), changes, error, dry_run: false });
    }
    entries
}

/// Describes each change as `container: old image → new image`.
fn describe_changes(rollout: &PlannedRollout) -> Vec<String> {
    rollout.changes.iter().map(|change| format!("{}: {} → {}", change.container, change.from, change.to)).collect()
}

/// Builds the strategic merge patch for one workload, or `None` when `mode` cannot change it.
pub fn patch_body(rollout: &PlannedRollout, mode: RolloutMode, now: chrono::DateTime<chrono::Utc>) -> Option<Value> {
    let kind = rollout.workload.kind;
    match mode {
        RolloutMode::Off => None,
        RolloutMode::Restart => {
            if !matches!(kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet) {
                return None;
            }
            let annotations = json!({ RESTARTED_AT_ANNOTATION: now.to_rfc3339() });
            Some(json!({"spec": {"template": {"metadata": {"annotations": annotations}}}}))
        }
        RolloutMode::Patch => {
            let list = |init: bool| -> Vec<Value> {
                rollout.changes.iter().filter(|change| change.init == init).map(|change| json!({"name": change.container, "image": change.to})).collect()
            };
            let mut pod_spec = serde_json::Map::new();
            let (containers, init_containers) = (list(false), list(true));
            if !containers.is_empty() {
                pod_spec.insert("containers".into(), Value::Array(containers));
            }
            if !init_containers.is_empty() {
                pod_spec.insert("initContainers".into(), Value::Array(init_containers));
            }
            let before: BTreeMap<&str, &str> = rollout.changes.iter().map(|change| (change.container.as_str(), change.from.as_str())).collect();
            let metadata = json!({"annotations": { ROLLED_OUT_FROM_ANNOTATION: serde_json::to_string(&before).expect("a map of strings serializes") }});
            let spec = match kind {
                WorkloadKind::Pod => Value::Object(pod_spec),
                WorkloadKind::CronJob => json!({"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}),
                WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => json!({"template": {"spec": pod_spec}}),
                WorkloadKind::Job => return None,
            };
            Some(json!({"metadata": metadata, "spec": spec}))
        }
    }
}

async fn send_patch(client: &kube::Client, workload: &WorkloadId, body: &Value) -> Result<(), kube::Error> {
    let params = PatchParams { field_manager: Some(crate::SCANNER_NAME.to_string()), ..PatchParams::default() };
    let patch = Patch::Strategic(body);
    let (namespace, name) = (workload.namespace.as_str(), workload.name.as_str());
    match workload.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace).patch(name, &params, &patch).await.map(drop),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace).patch(name, &params, &patch).await.map(drop),
        WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), namespace).patch(name, &params, &patch).await.map(drop),
        WorkloadKind::CronJob => Api::<CronJob>::namespaced(client.clone(), namespace).patch(name, &params, &patch).await.map(drop),
        WorkloadKind::Pod => Api::<Pod>::namespaced(client.clone(), namespace).patch(name, &params, &patch).await.map(drop),
        WorkloadKind::Job => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const APPROVALS: &str = "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n";

    fn image(kind: WorkloadKind, container: &str, init: bool, reference: &str) -> WorkloadImage {
        WorkloadImage {
            workload: WorkloadId { namespace: "mojaloop".into(), kind, name: "quoting-service".into() },
            container: container.into(),
            init,
            image: reference.into(),
            pull_secrets: Vec::new(),
            service_account: "default".into(),
        }
    }

    fn approvals() -> Approvals {
        Approvals::parse(APPROVALS).unwrap().0
    }

    /// Returns a filter that skips only the protected namespaces, which hold no test image.
    fn no_skipped_namespaces() -> NamespaceFilter {
        NamespaceFilter::new(&[], "image-patch-system")
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> SelectedNamespace {
        let labels = labels.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        SelectedNamespace { name: name.into(), labels }
    }

    fn image_in(namespace: &str, name: &str) -> WorkloadImage {
        let mut image = image(WorkloadKind::Deployment, "app", false, "mojaloop/quoting-service:v10.4.0");
        image.workload.namespace = namespace.into();
        image.workload.name = name.into();
        image
    }

    #[rstest::rstest]
    #[case::opted_in("mojaloop", &[("patches.mojaloop.io/enabled", "true")], None)]
    #[case::enforce_mode("mojaloop", &[("patches.mojaloop.io/mode", "enforce")], None)]
    #[case::audit_mode("mojaloop", &[("patches.mojaloop.io/mode", "audit")], Some(SkipReason::Audit))]
    #[case::kube_system("kube-system", &[], Some(SkipReason::Protected))]
    #[case::controller_namespace("patch-controller", &[], Some(SkipReason::Protected))]
    #[case::protected_in_audit("kube-system", &[("patches.mojaloop.io/mode", "audit")], Some(SkipReason::Protected))]
    #[case::image_patch_system_not_controller("image-patch-system", &[], None)]
    fn namespace_filter_reasons(#[case] name: &str, #[case] labels: &[(&str, &str)], #[case] expected: Option<SkipReason>) {
        let filter = NamespaceFilter::new(&[namespace(name, labels)], "patch-controller");

        assert_eq!(filter.skip_reason(name), expected);
    }

    #[test]
    fn namespace_filter_unknown_namespace_rolls_out() {
        let filter = NamespaceFilter::new(&[namespace("payments", &[("patches.mojaloop.io/mode", "audit")])], "image-patch-system");

        assert_eq!(filter.skip_reason("mojaloop"), None);
    }

    #[test]
    fn plan_skips_audit_and_protected_namespaces() {
        let namespaces = [
            namespace("mojaloop", &[("patches.mojaloop.io/enabled", "true")]),
            namespace("payments", &[("patches.mojaloop.io/enabled", "true"), ("patches.mojaloop.io/mode", "audit")]),
            namespace("kube-system", &[("patches.mojaloop.io/enabled", "true")]),
            namespace("image-patch-system", &[("patches.mojaloop.io/enabled", "true")]),
        ];
        let filter = NamespaceFilter::new(&namespaces, "image-patch-system");
        let images = vec![
            image_in("mojaloop", "quoting"),
            image_in("payments", "audited"),
            image_in("kube-system", "system"),
            image_in("image-patch-system", "own"),
        ];

        let plan = plan(&images, &approvals(), &filter);

        let rolled_out: Vec<&str> = plan.rollouts.iter().map(|rollout| rollout.workload.name.as_str()).collect();
        let skipped: Vec<(&str, SkipReason)> = plan.skipped.iter().map(|skipped| (skipped.workload.name.as_str(), skipped.reason)).collect();
        assert_eq!(rolled_out, ["quoting"]);
        assert_eq!(skipped, [("own", SkipReason::Protected), ("system", SkipReason::Protected), ("audited", SkipReason::Audit)]);
        assert_eq!(plan.skipped[2].changes, ["app: mojaloop/quoting-service:v10.4.0 → mojaloop/quoting-service:v10.4.0.2-patch"]);
    }

    #[test]
    fn skipped_rollout_names_namespace_and_remedy() {
        let skipped = |namespace: &str, reason| SkippedRollout {
            workload: WorkloadId { namespace: namespace.into(), kind: WorkloadKind::Deployment, name: "quoting".into() },
            changes: vec!["app: a:v1.0.0 → a:v1.0.0.1-patch".into()],
            reason,
        };

        let audit = skipped("payments", SkipReason::Audit).describe();
        let protected = skipped("kube-system", SkipReason::Protected).describe();

        assert!(audit.starts_with("payments/Deployment/quoting: not rolled out"), "{audit}");
        assert!(audit.contains("namespace payments is in audit mode (label patches.mojaloop.io/mode=audit)"), "{audit}");
        assert!(audit.contains("app: a:v1.0.0 → a:v1.0.0.1-patch"), "{audit}");
        assert!(audit.contains("Remove the label"), "{audit}");
        assert!(protected.contains("never patches namespace kube-system"), "{protected}");
        assert!(protected.contains("workload's own manifest"), "{protected}");
    }

    #[test]
    fn plan_rewrites_approved_and_skips_pinned_and_jobs() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let images = vec![
            image(WorkloadKind::Deployment, "app", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Deployment, "init", true, "mojaloop/quoting-service:v10.4.0.1-patch"),
            image(WorkloadKind::Deployment, "up-to-date", false, "mojaloop/quoting-service:v10.4.0.2-patch"),
            image(WorkloadKind::StatefulSet, "pinned", false, &format!("mojaloop/quoting-service@{digest}")),
            image(WorkloadKind::StatefulSet, "latest-pinned", false, &format!("mojaloop/quoting-service:latest@{digest}")),
            image(WorkloadKind::Job, "job", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Pod, "other", false, "mojaloop/account-lookup-service:v10.4.0"),
        ];

        let planned = plan(&images, &approvals(), &no_skipped_namespaces()).rollouts;

        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].workload.kind, WorkloadKind::Deployment);
        let containers: Vec<&str> = planned[0].changes.iter().map(|change| change.container.as_str()).collect();
        assert_eq!(containers, ["app", "init"]);
        assert_eq!(planned[0].changes[0].to, "mojaloop/quoting-service:v10.4.0.2-patch");
    }

    #[rstest::rstest]
    #[case::approval_without_digest(APPROVALS, "mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case::approval_with_digest(
        "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        "mojaloop/quoting-service:v10.4.0.2-patch@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    fn plan_rewrites_tag_and_digest_like_webhook(#[case] document: &str, #[case] expected: &str) {
        let approvals = Approvals::parse(document).unwrap().0;
        let running = format!("mojaloop/quoting-service:v10.4.0@sha256:{}", "b".repeat(64));
        let images = vec![image(WorkloadKind::Deployment, "app", false, &running)];

        let planned = plan(&images, &approvals, &no_skipped_namespaces()).rollouts;

        let Decision::Rewrite(webhook) = common::decide(&running, "mojaloop", &approvals) else {
            panic!("the webhook rewrites {running}");
        };
        assert_eq!(planned.len(), 1, "{planned:?}");
        assert_eq!(planned[0].changes[0].from, running);
        assert_eq!(planned[0].changes[0].to, expected);
        assert_eq!(planned[0].changes[0].to, webhook.to);
    }

    #[test]
    fn patch_body_shapes() {
        let now = chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let change = |init| ContainerChange { container: "app".into(), init, from: "a:v1.0.0".into(), to: "a:v1.0.0.1-patch".into(), approval_index: 0 };
        let rollout = |kind, init| PlannedRollout {
            workload: WorkloadId { namespace: "mojaloop".into(), kind, name: "x".into() },
            changes: vec![change(init)],
        };

        let deployment = patch_body(&rollout(WorkloadKind::Deployment, false), RolloutMode::Patch, now).unwrap();
        let cron_job = patch_body(&rollout(WorkloadKind::CronJob, true), RolloutMode::Patch, now).unwrap();
        let pod = patch_body(&rollout(WorkloadKind::Pod, false), RolloutMode::Patch, now).unwrap();
        let restart = patch_body(&rollout(WorkloadKind::DaemonSet, false), RolloutMode::Restart, now).unwrap();

        assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "a:v1.0.0.1-patch");
        assert_eq!(deployment["metadata"]["annotations"][ROLLED_OUT_FROM_ANNOTATION], r#"{"app":"a:v1.0.0"}"#);
        assert_eq!(cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]["name"], "app");
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:v1.0.0.1-patch");
        assert_eq!(restart["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION], "2025-01-01T00:00:00+00:00");
        assert!(patch_body(&rollout(WorkloadKind::Pod, false), RolloutMode::Restart, now).is_none());
        assert!(patch_body(&rollout(WorkloadKind::Deployment, false), RolloutMode::Off, now).is_none());
    }

    #[test]
    fn preview_keeps_what_mode_can_change() {
        let images = vec![
            image(WorkloadKind::Deployment, "app", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Pod, "debug", false, "mojaloop/quoting-service:v10.4.0"),
        ];
        let planned = plan(&images, &approvals(), &no_skipped_namespaces()).rollouts;

        let patch = preview(&planned, RolloutMode::Patch);
        let restart = preview(&planned, RolloutMode::Restart);

        assert_eq!(patch.len(), 2);
        assert!(patch.iter().all(|entry| entry.dry_run && entry.error.is_none()));
        assert_eq!(patch[0].changes, ["app: mojaloop/quoting-service:v10.4.0 → mojaloop/quoting-service:v10.4.0.2-patch"]);
        assert_eq!(restart.len(), 1, "restart cannot change a bare Pod");
        assert_eq!(restart[0].workload.kind, WorkloadKind::Deployment);
    }

    fn unconfirmed(index: usize) -> UnconfirmedApproval {
        UnconfirmedApproval {
            index,
            repository: Repository::new("docker.io", "mojaloop/quoting-service"),
            patch: "v10.4.0.2-patch".into(),
            reason: Unconfirmed::DigestMismatch { approved: format!("sha256:{}", "a".repeat(64)), served: format!("sha256:{}", "b".repeat(64)) },
        }
    }

    fn two_line_plan() -> Vec<PlannedRollout> {
        let approvals = Approvals::parse(
            "approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n  - image: mojaloop/als\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n",
        )
        .unwrap()
        .0;
        let images = vec![
            image(WorkloadKind::Deployment, "quoting", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Deployment, "als", false, "mojaloop/als:v1.0.0"),
        ];
        plan(&images, &approvals, &no_skipped_namespaces()).rollouts
    }

    #[test]
    fn without_unconfirmed_drops_changes() {
        let planned = without_unconfirmed(two_line_plan(), &[unconfirmed(0)], RolloutMode::Patch);

        assert_eq!(planned.len(), 1);
        let containers: Vec<&str> = planned[0].changes.iter().map(|change| change.container.as_str()).collect();
        assert_eq!(containers, ["als"]);
    }

    #[test]
    fn without_unconfirmed_restart_drops_workload() {
        let planned = without_unconfirmed(two_line_plan(), &[unconfirmed(1)], RolloutMode::Restart);

        assert!(planned.is_empty(), "{planned:?}");
    }

    #[test]
    fn unconfirmed_approval_names_digests() {
        let mismatch = unconfirmed(3).describe();
        let reason = Unconfirmed::DigestUnresolved { approved: format!("sha256:{}", "a".repeat(64)), error: "HTTP 503".into() };
        let unknown = UnconfirmedApproval { reason, ..unconfirmed(3) }.describe();

        assert!(mismatch.starts_with("approvals[3] (docker.io/mojaloop/quoting-service:v10.4.0.2-patch)"), "{mismatch}");
        assert!(mismatch.contains(&"a".repeat(64)), "{mismatch}");
        assert!(mismatch.contains(&"b".repeat(64)), "{mismatch}");
        assert!(mismatch.contains("not rolled out"), "{mismatch}");
        assert!(unknown.contains("cannot verify"), "{unknown}");
        assert!(unknown.contains("HTTP 503"), "{unknown}");
    }

    #[test]
    fn unconfirmed_notice_key_is_stable() {
        let unresolved = |index: usize, error: &str| UnconfirmedApproval {
            reason: Unconfirmed::DigestUnresolved { approved: format!("sha256:{}", "a".repeat(64)), error: error.into() },
            ..unconfirmed(index)
        };
        let missing = UnconfirmedApproval { reason: Unconfirmed::MissingTag, ..unconfirmed(0) };
        let unavailable = UnconfirmedApproval { reason: Unconfirmed::TagListUnavailable, ..unconfirmed(0) };

        assert_eq!(unresolved(0, "HTTP 503").notice_key(), unresolved(2, "timed out after 10s").notice_key(), "index and error are left out");
        assert_eq!(missing.notice_key(), "docker.io/mojaloop/quoting-service:v10.4.0.2-patch: tag missing");
        assert_ne!(missing.notice_key(), unavailable.notice_key());
        assert!(unconfirmed(0).notice_key().contains(&"b".repeat(64)), "a mismatch names the served digest");
    }

    #[test]
    fn mark_unconfirmed_rows_sets_error() {
        let approvals = approvals();
        let row = |image: &str| Row {
            workload: WorkloadId { namespace: "mojaloop".into(), kind: WorkloadKind::Deployment, name: "quoting-service".into() },
            container: "app".into(),
            init: false,
            image: image.into(),
            status: Status::Approved,
            newest_patch: None,
            digest: None,
            detail: None,
        };
        let mut rows = vec![row("mojaloop/quoting-service:v10.4.0"), row("mojaloop/als:v1.0.0")];

        mark_unconfirmed_rows(&mut rows, &[unconfirmed(0)], &approvals);

        assert_eq!(rows[0].status, Status::RegistryError);
        assert_eq!(rows[0].detail, Some(unconfirmed(0).describe()));
        assert_eq!(rows[1].status, Status::Approved);
    }

    #[test]
    fn unconfirmed_approval_names_missing_tag() {
        let missing = UnconfirmedApproval { reason: Unconfirmed::MissingTag, ..unconfirmed(2) }.describe();
        let unlisted = UnconfirmedApproval { reason: Unconfirmed::TagListUnavailable, ..unconfirmed(2) }.describe();

        assert!(missing.starts_with("approvals[2] (docker.io/mojaloop/quoting-service:v10.4.0.2-patch)"), "{missing}");
        assert!(missing.contains("the registry has no tag v10.4.0.2-patch"), "{missing}");
        assert!(missing.contains("not rolled out"), "{missing}");
        assert!(missing.contains("webhook still rewrites to it"), "{missing}");
        assert!(missing.contains("Correct the approval's patch tag or push the image"), "{missing}");
        assert!(unlisted.contains("tag list could not be read"), "{unlisted}");
        assert!(unlisted.contains("next scan checks it again"), "{unlisted}");
    }

    /// Returns a client for a loopback port that was just free, so every connection is refused.
    fn unreachable_registry() -> (String, RegistryClient) {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let registry = RegistryClient::new(crate::registry::RegistryConfig {
            insecure: vec![address.clone()],
            concurrency: 1,
            timeout: std::time::Duration::from_secs(2),
            retry: crate::retry::RetryPolicy { attempts: 1, backoff: std::time::Duration::from_millis(10), max_retry_after: std::time::Duration::from_secs(1) },
            page_size: 10,
        })
        .unwrap();
        (address, registry)
    }

    /// Returns the tag lists of the repositories `(path, tags)` on `address`, as the scan keeps them.
    fn tag_lists(address: &str, repositories: &[(&str, &[&str])]) -> HashMap<Repository, Arc<Vec<String>>> {
        repositories
            .iter()
            .map(|(path, tags)| (Repository::new(address, path), Arc::new(tags.iter().map(|tag| tag.to_string()).collect())))
            .collect()
    }

    #[tokio::test]
    async fn approved_tag_missing_from_tag_list() {
        let (address, registry) = unreachable_registry();
        let digest = format!("sha256:{}", "c".repeat(64));
        let document = format!(
            "approvals:\n  - image: {address}/mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.9-patch\n  - image: {address}/mojaloop/als\n    version: v1.0.0\n    patch: v1.0.0.2-patch\n    digest: {digest}\n  - image: {address}/mojaloop/ledger\n    version: v17.0.0\n    patch: v17.0.0.1-patch\n  - image: {address}/mojaloop/adapter\n    version: v14.0.0\n    patch: v14.0.0.1-patch\n"
        );
        let approvals = Approvals::parse(&document).unwrap().0;
        let images = vec![
            image(WorkloadKind::Deployment, "quoting", false, &format!("{address}/mojaloop/quoting-service:v10.4.0")),
            image(WorkloadKind::Deployment, "als", false, &format!("{address}/mojaloop/als:v1.0.0@sha256:{}", "d".repeat(64))),
            image(WorkloadKind::Deployment, "ledger", false, &format!("{address}/mojaloop/ledger:v17.0.0")),
            image(WorkloadKind::Deployment, "adapter", false, &format!("{address}/mojaloop/adapter:v14.0.0")),
        ];
        // The adapter's tag list could not be read, so it has no entry.
        let tags = tag_lists(
            &address,
            &[
                ("mojaloop/quoting-service", &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.3-patch"]),
                ("mojaloop/als", &["v1.0.0", "v1.0.0.1-patch"]),
                ("mojaloop/ledger", &["v17.0.0", "v17.0.0.1-patch"]),
            ],
        );
        let planned = plan(&images, &approvals, &no_skipped_namespaces()).rollouts;

        let unconfirmed = check_approvals(&registry, &planned, &approvals, &tags, &HashMap::new()).await;

        let reasons: Vec<(usize, &Unconfirmed)> = unconfirmed.iter().map(|approval| (approval.index, &approval.reason)).collect();
        // The digest-pinned approval's missing tag is found without a manifest request, which the refused connection would fail.
        assert_eq!(reasons, [(0, &Unconfirmed::MissingTag), (1, &Unconfirmed::MissingTag), (3, &Unconfirmed::TagListUnavailable)]);
        assert_eq!(unconfirmed[0].patch, "v10.4.0.9-patch");
        let remaining = without_unconfirmed(planned, &unconfirmed, RolloutMode::Patch);
        let containers: Vec<&str> = remaining.iter().flat_map(|rollout| rollout.changes.iter().map(|change| change.container.as_str())).collect();
        assert_eq!(containers, ["ledger"]);
    }

    #[tokio::test]
    async fn unreachable_registry_leaves_approval_unconfirmed() {
        let (address, registry) = unreachable_registry();
        let digest = format!("sha256:{}", "c".repeat(64));
        let document = format!(
            "approvals:\n  - image: {address}/mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    digest: {digest}\n  - image: {address}/mojaloop/als\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n"
        );
        let approvals = Approvals::parse(&document).unwrap().0;
        let images = vec![
            image(WorkloadKind::Deployment, "quoting", false, &format!("{address}/mojaloop/quoting-service:v10.4.0")),
            image(WorkloadKind::Deployment, "als", false, &format!("{address}/mojaloop/als:v1.0.0")),
        ];
        // Both tag lists were read before the registry went away, and both name their patch.
        let tags = tag_lists(&address, &[("mojaloop/quoting-service", &["v10.4.0", "v10.4.0.2-patch"]), ("mojaloop/als", &["v1.0.0", "v1.0.0.1-patch"])]);
        let planned = plan(&images, &approvals, &no_skipped_namespaces()).rollouts;

        let unconfirmed = check_approvals(&registry, &planned, &approvals, &tags, &HashMap::new()).await;

        assert_eq!(unconfirmed.len(), 1, "only the digest-pinned approval needs the registry: {unconfirmed:?}");
        assert_eq!(unconfirmed[0].index, 0);
        let Unconfirmed::DigestUnresolved { approved, .. } = &unconfirmed[0].reason else {
            panic!("expected an unresolved digest: {unconfirmed:?}");
        };
        assert_eq!(*approved, digest);
    }
}
