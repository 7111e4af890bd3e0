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
//! Images pinned by digest are never changed, nor Jobs, whose pod template is immutable.
//! Only workloads that discovery found, in opted-in namespaces, are ever planned.
//!
//! An approval with a `digest` is rolled out only after the registry confirmed that its
//! patch tag serves that digest, because a container runtime pulls by digest and would
//! otherwise run whatever image the digest names ([`check_approved_digests`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::{Approvals, Decision, ImageRef, Repository};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::discovery::{WorkloadId, WorkloadImage, WorkloadKind};
use crate::notice::RolloutEntry;
use crate::options::RolloutMode;
use crate::registry::{Credential, RegistryClient};
use crate::report::{Row, Status};

/// Annotation on a patched workload: JSON of container name to the image it had before.
pub const ROLLED_OUT_FROM_ANNOTATION: &str = "patches.mojaloop.io/rolled-out-from";
/// Pod-template annotation that `restart` sets to the time of the restart.
pub const RESTARTED_AT_ANNOTATION: &str = "patches.mojaloop.io/restartedAt";

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

// NOTE: the plan covers every opted-in namespace. It does not skip namespaces in audit mode,
// `kube-system` or the controller's own, which only the webhook leaves out.
/// Plans the changes that bring `images` to their approved patches.
pub fn plan(images: &[WorkloadImage], approvals: &Approvals) -> Vec<PlannedRollout> {
    let mut planned: BTreeMap<WorkloadId, Vec<ContainerChange>> = BTreeMap::new();
    for image in images {
        if image.workload.kind == WorkloadKind::Job {
            continue;
        }
        // A digest pins the exact image, so even a tag that comes with it stays.
        let pinned = ImageRef::parse(&image.image).map_or(true, |reference| reference.digest.is_some());
        if pinned {
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
    planned.into_iter().map(|(workload, changes)| PlannedRollout { workload, changes }).collect()
}

/// A digest-pinned approval that this scan does not roll out, because the registry serves
/// another digest for its patch tag or the digest could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedApproval {
    /// The approval's index in the `approvals` list.
    pub index: usize,
    /// The approval's source repository.
    pub repository: Repository,
    /// The approved patch tag.
    pub patch: String,
    /// The approval's `digest`.
    pub approved_digest: String,
    /// The digest that the registry serves for the patch tag, or the lookup error.
    pub served: Result<String, String>,
}

impl UnconfirmedApproval {
    /// Returns the key of the report's registry errors: `repository:patch`.
    pub fn report_key(&self) -> String {
        format!("{}:{}", self.repository, self.patch)
    }

    /// Describes why the approval is unconfirmed, naming both digests.
    pub fn describe(&self) -> String {
        let (index, repository, patch, approved) = (self.index, &self.repository, &self.patch, &self.approved_digest);
        match &self.served {
            Ok(served) => format!(
                "approvals[{index}] ({repository}:{patch}): approved digest {approved} does not match the registry's digest {served}; the approval is not rolled out until its digest is corrected"
            ),
            Err(error) => format!(
                "approvals[{index}] ({repository}:{patch}): cannot verify the approved digest {approved}: {error}; the approval is not rolled out, and the next scan checks it again"
            ),
        }
    }
}

/// Resolves the patch tag of every digest-pinned approval that `planned` uses and returns
/// the approvals whose `digest` the registry does not confirm. Each one is logged.
pub async fn check_approved_digests(
    registry: &RegistryClient,
    planned: &[PlannedRollout],
    approvals: &Approvals,
    credentials: &HashMap<Repository, Vec<Credential>>,
) -> Vec<UnconfirmedApproval> {
    let used: BTreeSet<usize> = planned.iter().flat_map(|rollout| rollout.changes.iter().map(|change| change.approval_index)).collect();
    let mut unconfirmed = Vec::new();
    for approval in approvals.approvals().iter().filter(|approval| used.contains(&approval.index)) {
        let Some(approved_digest) = &approval.digest else {
            continue;
        };
        let repository_credentials = credentials.get(&approval.repository).map_or(&[][..], Vec::as_slice);
        let served = match registry.manifest_digest(&approval.repository, &approval.patch, repository_credentials).await {
            Ok(served) if served == *approved_digest => continue,
            Ok(served) => Ok(served),
            Err(error) => Err(error.to_string()),
        };
        let approval = UnconfirmedApproval {
            index: approval.index,
            repository: approval.repository.clone(),
            patch: approval.patch.clone(),
            approved_digest: approved_digest.clone(),
            served,
        };
        match &approval.served {
            Ok(served) => tracing::error!(
                approval = approval.index,
                repository = %approval.repository,
                tag = %approval.patch,
                approved_digest = %approval.approved_digest,
                registry_digest = %served,
                "the approval's digest does not match the digest the registry serves for its patch tag; the approval is not rolled out"
            ),
            Err(error) => tracing::warn!(
                approval = approval.index,
                repository = %approval.repository,
                tag = %approval.patch,
                approved_digest = %approval.approved_digest,
                %error,
                "cannot resolve the digest of the approved patch tag; the approval is not rolled out and is left for the next scan"
            ),
        }
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

    #[test]
    fn plan_rewrites_approved_and_skips_pinned_and_jobs() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let images = vec![
            image(WorkloadKind::Deployment, "app", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Deployment, "init", true, "mojaloop/quoting-service:v10.4.0.1-patch"),
            image(WorkloadKind::Deployment, "up-to-date", false, "mojaloop/quoting-service:v10.4.0.2-patch"),
            image(WorkloadKind::StatefulSet, "pinned", false, &format!("mojaloop/quoting-service:v10.4.0@{digest}")),
            image(WorkloadKind::Job, "job", false, "mojaloop/quoting-service:v10.4.0"),
            image(WorkloadKind::Pod, "other", false, "mojaloop/account-lookup-service:v10.4.0"),
        ];

        let planned = plan(&images, &approvals());

        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].workload.kind, WorkloadKind::Deployment);
        let containers: Vec<&str> = planned[0].changes.iter().map(|change| change.container.as_str()).collect();
        assert_eq!(containers, ["app", "init"]);
        assert_eq!(planned[0].changes[0].to, "mojaloop/quoting-service:v10.4.0.2-patch");
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
        let planned = plan(&images, &approvals());

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
            approved_digest: format!("sha256:{}", "a".repeat(64)),
            served: Ok(format!("sha256:{}", "b".repeat(64))),
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
        plan(&images, &approvals)
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
        let unknown = UnconfirmedApproval { served: Err("HTTP 503".into()), ..unconfirmed(3) }.describe();

        assert!(mismatch.starts_with("approvals[3] (docker.io/mojaloop/quoting-service:v10.4.0.2-patch)"), "{mismatch}");
        assert!(mismatch.contains(&"a".repeat(64)), "{mismatch}");
        assert!(mismatch.contains(&"b".repeat(64)), "{mismatch}");
        assert!(mismatch.contains("not rolled out"), "{mismatch}");
        assert!(unknown.contains("cannot verify"), "{unknown}");
        assert!(unknown.contains("HTTP 503"), "{unknown}");
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

    #[tokio::test]
    async fn unreachable_registry_leaves_approval_unconfirmed() {
        // A loopback port that was just free: every connection is refused.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let digest = format!("sha256:{}", "c".repeat(64));
        let document = format!(
            "approvals:\n  - image: {address}/mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    digest: {digest}\n  - image: {address}/mojaloop/als\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n"
        );
        let approvals = Approvals::parse(&document).unwrap().0;
        let images = vec![
            image(WorkloadKind::Deployment, "quoting", false, &format!("{address}/mojaloop/quoting-service:v10.4.0")),
            image(WorkloadKind::Deployment, "als", false, &format!("{address}/mojaloop/als:v1.0.0")),
        ];
        let registry = RegistryClient::new(crate::registry::RegistryConfig {
            insecure: vec![address.clone()],
            concurrency: 1,
            timeout: std::time::Duration::from_secs(2),
            retry: crate::retry::RetryPolicy { attempts: 1, backoff: std::time::Duration::from_millis(10), max_retry_after: std::time::Duration::from_secs(1) },
            page_size: 10,
        })
        .unwrap();
        let planned = plan(&images, &approvals);

        let unconfirmed = check_approved_digests(&registry, &planned, &approvals, &HashMap::new()).await;

        assert_eq!(unconfirmed.len(), 1, "only the digest-pinned approval is checked: {unconfirmed:?}");
        assert_eq!(unconfirmed[0].index, 0);
        assert_eq!(unconfirmed[0].approved_digest, digest);
        assert!(unconfirmed[0].served.is_err(), "{unconfirmed:?}");
    }
}
