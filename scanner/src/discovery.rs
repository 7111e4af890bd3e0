//! Discovery of the images that workloads in opted-in namespaces run.
//!
//! Controllers are read, not the pods they own: Deployments, StatefulSets, DaemonSets,
//! CronJobs, Jobs that no CronJob owns, and Pods that no controller owns. A DaemonSet's
//! many pods are thus one workload. Every container, init containers included, yields
//! one [`WorkloadImage`].

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, ResourceExt};
use serde::Serialize;

/// The service account of a pod spec that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The kinds of workload the scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 CronJob.
    CronJob,
    /// batch/v1 Job that no CronJob owns.
    Job,
    /// v1 Pod that no controller owns.
    Pod,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One workload, named as `kubectl` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkloadId {
    /// Namespace.
    pub namespace: String,
    /// Kind.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// One container of a workload and the image it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadImage {
    /// The workload.
    pub workload: WorkloadId,
    /// The container name.
    pub container: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The image as written in the pod spec.
    pub image: String,
    /// The names of the pod spec's `imagePullSecrets`, in the workload's namespace.
    pub pull_secrets: Vec<String>,
    /// The pod spec's service account (`serviceAccountName`, `default` when unset). Its
    /// `imagePullSecrets` apply too: admission copies them into Pods, not into templates.
    pub service_account: String,
}

/// The namespaces that a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceSelection {
    /// These namespaces, by name.
    Names(Vec<String>),
    /// The namespaces whose labels match this selector.
    Selector(String),
}

/// A namespace that a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedNamespace {
    /// Name.
    pub name: String,
    /// Labels. Rollout reads them to skip namespaces in audit mode.
    pub labels: BTreeMap<String, String>,
}

/// The namespaces that a selection chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    /// The existing namespaces, sorted by name, with their labels.
    pub namespaces: Vec<SelectedNamespace>,
    /// Names given in [`NamespaceSelection::Names`] that match no existing namespace, sorted.
    pub missing: Vec<String>,
}

/// Returns the namespaces that `selection` chooses.
///
/// Both selections list the namespaces once, so that a namespace named with `--namespace`
/// has its labels too, and so that a named namespace that does not exist is found.
pub async fn select_namespaces(client: &kube::Client, selection: &NamespaceSelection) -> Result<Selected, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let params = match selection {
        NamespaceSelection::Names(_) => ListParams::default(),
        NamespaceSelection::Selector(selector) => ListParams::default().labels(selector),
    };
    let mut labels: BTreeMap<String, BTreeMap<String, String>> = namespaces
        .list(&params)
        .await?
        .items
        .into_iter()
        .map(|namespace| (namespace.name_any(), namespace.metadata.labels.unwrap_or_default()))
        .collect();

    let mut names: Vec<String> = match selection {
        NamespaceSelection::Names(names) => names.clone(),
        NamespaceSelection::Selector(_) => labels.keys().cloned().collect(),
    };
    names.sort();
    names.dedup();
    let mut selected = Selected::default();
    for name in names {
        match labels.remove(&name) {
            Some(labels) => selected.namespaces.push(SelectedNamespace { name, labels }),
            None => selected.missing.push(name),
        }
    }
    Ok(selected)
}

/// Lists the images of every workload in `namespace`.
pub async fn discover_namespace(client: &kube::Client, namespace: &str) -> Result<Vec<WorkloadImage>, kube::Error> {
    let params = ListParams::default();
    let mut images = Vec::new();

    for item in Api::<Deployment>::namespaced(client.clone(), namespace).list(&params).await? {
        let spec = item.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        push_images(&mut images, WorkloadKind::Deployment, &item.metadata, spec);
    }
    for item in Api::<StatefulSet>::namespaced(client.clone(), namespace).list(&params).await? {
        let spec = item.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        push_images(&mut images, WorkloadKind::StatefulSet, &item.metadata, spec);
    }
    for item in Api::<DaemonSet>::namespaced(client.clone(), namespace).list(&params).await? {
        let spec = item.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        push_images(&mut images, WorkloadKind::DaemonSet, &item.metadata, spec);
    }
    for item in Api::<CronJob>::namespaced(client.clone(), namespace).list(&params).await? {
        let spec = item.spec.as_ref().and_then(|spec| spec.job_template.spec.as_ref()).and_then(|spec| spec.template.spec.as_ref());
        push_images(&mut images, WorkloadKind::CronJob, &item.metadata, spec);
    }
    for item in Api::<Job>::namespaced(client.clone(), namespace).list(&params).await? {
        if owned_by_kind(&item.metadata, "CronJob") {
            continue;
        }
        let spec = item.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        push_images(&mut images, WorkloadKind::Job, &item.metadata, spec);
    }
    for item in Api::<Pod>::namespaced(client.clone(), namespace).list(&params).await? {
        if has_controller(&item.metadata) {
            continue;
        }
        push_images(&mut images, WorkloadKind::Pod, &item.metadata, item.spec.as_ref());
    }
    Ok(images)
}

/// Checks for an owner reference of kind `kind`, which identifies a Job's CronJob without
/// reading the CronJob.
fn owned_by_kind(metadata: &ObjectMeta, kind: &str) -> bool {
    metadata.owner_references.iter().flatten().any(|owner| owner.kind == kind)
}

fn has_controller(metadata: &ObjectMeta) -> bool {
    metadata.owner_references.iter().flatten().any(|owner| owner.controller == Some(true))
}

fn push_images(images: &mut Vec<WorkloadImage>, kind: WorkloadKind, metadata: &ObjectMeta, spec: Option<&PodSpec>) {
    let Some(spec) = spec else {
        return;
    };
    let workload = WorkloadId {
        namespace: metadata.namespace.clone().unwrap_or_default(),
        kind,
        name: metadata.name.clone().unwrap_or_default(),
    };
    let pull_secrets: Vec<String> = spec.image_pull_secrets.iter().flatten().map(|secret| secret.name.clone()).filter(|name| !name.is_empty()).collect();
    // `serviceAccount` is the deprecated spelling that older manifests may still set.
    let service_account = spec
        .service_account_name
        .as_ref()
        .or(spec.service_account.as_ref())
        .filter(|name| !name.is_empty())
        .map_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string(), Clone::clone);
    let init_containers = spec.init_containers.iter().flatten().map(|container| (container, true));
    let containers = spec.containers.iter().map(|container| (container, false));
    for (container, init) in init_containers.chain(containers) {
        let Some(image) = container.image.clone() else {
            continue;
        };
        images.push(WorkloadImage {
            workload: workload.clone(),
            container: container.name.clone(),
            init,
            image,
            pull_secrets: pull_secrets.clone(),
            service_account: service_account.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, LocalObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owner(kind: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: "owner".into(),
            uid: "uid".into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn push_images_includes_init_containers() {
        let metadata = ObjectMeta { name: Some("central-ledger".into()), namespace: Some("mojaloop".into()), ..ObjectMeta::default() };
        let spec = PodSpec {
            init_containers: Some(vec![Container { name: "wait-for-mysql".into(), image: Some("mysql:8.0.36".into()), ..Container::default() }]),
            containers: vec![
                Container { name: "service".into(), image: Some("mojaloop/central-ledger:v17.0.0".into()), ..Container::default() },
                Container { name: "no-image".into(), image: None, ..Container::default() },
            ],
            image_pull_secrets: Some(vec![LocalObjectReference { name: "hub-pull".into() }]),
            ..PodSpec::default()
        };
        let mut images = Vec::new();

        push_images(&mut images, WorkloadKind::Deployment, &metadata, Some(&spec));

        assert_eq!(images.len(), 2);
        assert_eq!(images[0].container, "wait-for-mysql");
        assert!(images[0].init);
        assert_eq!(images[1].image, "mojaloop/central-ledger:v17.0.0");
        assert!(!images[1].init);
        assert_eq!(images[1].pull_secrets, ["hub-pull"]);
        assert_eq!(images[1].service_account, "default");
        assert_eq!(images[1].workload.to_string(), "mojaloop/Deployment/central-ledger");
    }

    #[test]
    fn owner_checks() {
        let job = ObjectMeta { owner_references: Some(vec![owner("CronJob", true)]), ..ObjectMeta::default() };
        let replica_pod = ObjectMeta { owner_references: Some(vec![owner("ReplicaSet", true)]), ..ObjectMeta::default() };
        let loose_pod = ObjectMeta { owner_references: Some(vec![owner("ConfigMap", false)]), ..ObjectMeta::default() };

        assert!(owned_by_kind(&job, "CronJob"));
        assert!(!owned_by_kind(&replica_pod, "CronJob"));
        assert!(has_controller(&replica_pod));
        assert!(!has_controller(&loose_pod));
        assert!(!has_controller(&ObjectMeta::default()));
    }

    #[test]
    fn push_images_reads_service_account() {
        let metadata = ObjectMeta { name: Some("ledger".into()), namespace: Some("mojaloop".into()), ..ObjectMeta::default() };
        let container = Container { name: "app".into(), image: Some("mojaloop/central-ledger:v17.0.0".into()), ..Container::default() };
        let named = PodSpec { service_account_name: Some("hub-puller".into()), containers: vec![container.clone()], ..PodSpec::default() };
        let deprecated = PodSpec { service_account: Some("old-puller".into()), containers: vec![container], ..PodSpec::default() };
        let mut images = Vec::new();

        push_images(&mut images, WorkloadKind::Deployment, &metadata, Some(&named));
        push_images(&mut images, WorkloadKind::StatefulSet, &metadata, Some(&deprecated));

        assert_eq!(images[0].service_account, "hub-puller");
        assert_eq!(images[1].service_account, "old-puller");
    }
}
