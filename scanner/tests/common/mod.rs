//! Fixtures of the scanner's cluster tests: a control plane with the scanner's
//! manifests applied, a registry behind the fault proxy, a Slack receiver, and helpers
//! that create workloads and run a scan as the scanner's service account.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use clap::Parser;
use scanner::options::Options;
use scanner::report::{Report, Row};
use scanner::scan::{self, ScanError};
use serde_json::{Value, json};
use testsupport::{Cluster, FaultProxy, Registry, SlackReceiver};

/// The controller namespace.
pub const SYSTEM: &str = "image-patch-system";
/// An opted-in namespace.
pub const MOJALOOP: &str = "mojaloop";
/// A namespace that did not opt in.
pub const OTHER: &str = "other";

/// The running stack of one test.
pub struct Stack {
    pub cluster: Cluster,
    pub admin: kube::Client,
    pub scanner: kube::Client,
    pub registry: Registry,
    pub proxy: FaultProxy,
    pub slack: SlackReceiver,
}

/// Starts the stack: namespaces, the scanner's manifests (and the rollout component when
/// `rollout`), the Slack Secret, and a plain registry behind the fault proxy.
pub async fn start(rollout: bool) -> Stack {
    let cluster = Cluster::start().await.expect("control plane starts");
    let admin = cluster.client();
    cluster.create_namespace(SYSTEM, &[]).await.unwrap();
    cluster.create_namespace(MOJALOOP, &[("patches.mojaloop.io/enabled", "true")]).await.unwrap();
    cluster.create_namespace(OTHER, &[]).await.unwrap();

    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/scanner");
    cluster.kubectl(["apply", "-k", manifests.to_str().unwrap()]).await.expect("scanner manifests apply");
    if rollout {
        let rbac = manifests.join("components/rollout/rbac.yaml");
        cluster.kubectl(["apply", "-f", rbac.to_str().unwrap()]).await.expect("rollout RBAC applies");
    }

    let slack = SlackReceiver::start().await.unwrap();
    create_slack_secret(&admin, &slack.url()).await;
    let registry = Registry::start_plain().await.expect("registry starts");
    let proxy = FaultProxy::start(&registry.url()).await.unwrap();
    let scanner = cluster.service_account_client(SYSTEM, "image-patch-scanner").await.unwrap();
    Stack { cluster, admin, scanner, registry, proxy, slack }
}

async fn create_slack_secret(admin: &kube::Client, url: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "image-patch-slack", "namespace": SYSTEM},
        "stringData": {"webhook-url": url},
    }))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), SYSTEM).create(&PostParams::default(), &secret).await.unwrap();
}

impl Stack {
    /// Options for a scan against this stack, plus `extra` flags.
    pub fn options(&self, extra: &[&str]) -> Options {
        let mut args = vec![
            "image-patch-scanner".to_string(),
            format!("--insecure-registry={}", self.proxy.address()),
            format!("--insecure-registry={}", self.registry.address()),
            "--cluster-name=test-hub".to_string(),
            "--registry-timeout=2".to_string(),
            "--registry-attempts=3".to_string(),
            "--registry-backoff-ms=50".to_string(),
            "--slack-timeout=2".to_string(),
            "--slack-attempts=2".to_string(),
        ];
        args.extend(extra.iter().map(|flag| flag.to_string()));
        Options::try_parse_from(args).expect("test options parse")
    }

    /// Runs one scan as the scanner's service account.
    pub async fn scan(&self, extra: &[&str]) -> Result<Report, ScanError> {
        scan::run(self.scanner.clone(), &self.options(extra)).await
    }

    /// Pushes `tags` of `repository` to the registry and returns their digests.
    pub async fn seed(&self, repository: &str, tags: &[&str]) -> Vec<String> {
        testsupport::seed::push_image(self.registry.address(), repository, tags, &self.registry.auth())
            .await
            .expect("images push")
            .into_iter()
            .map(|digest| digest.to_string())
            .collect()
    }

    /// Returns an image reference through the fault proxy.
    pub fn image(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.proxy.address())
    }

    /// Writes the approvals document.
    pub async fn set_approvals(&self, document: &str) {
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "image-patch-approvals", "namespace": SYSTEM},
            "data": {"approvals.yaml": document},
        }))
        .unwrap();
        let config_maps = Api::<ConfigMap>::namespaced(self.admin.clone(), SYSTEM);
        if config_maps.get_opt("image-patch-approvals").await.unwrap().is_some() {
            config_maps.patch("image-patch-approvals", &PatchParams::default(), &Patch::Merge(&config_map)).await.unwrap();
        } else {
            config_maps.create(&PostParams::default(), &config_map).await.unwrap();
        }
    }

    /// Reads a key of a ConfigMap in the controller namespace.
    pub async fn config_map_data(&self, name: &str, key: &str) -> Option<String> {
        let config_map = Api::<ConfigMap>::namespaced(self.admin.clone(), SYSTEM).get_opt(name).await.unwrap()?;
        config_map.data?.get(key).cloned()
    }

    /// Returns the announced records of the state ConfigMap, as `repository:patch`.
    pub async fn announced(&self) -> Vec<String> {
        let Some(text) = self.config_map_data("image-patch-state", "state.json").await else {
            return Vec::new();
        };
        let state: scanner::state::StateDocument = serde_json::from_str(&text).unwrap();
        state.announced.iter().map(|record| format!("{}:{}", record.key.repository, record.key.patch)).collect()
    }

    /// Creates a Deployment with `containers` and `init_containers` as (name, image).
    pub async fn deployment(&self, namespace: &str, name: &str, containers: &[(&str, &str)], init_containers: &[(&str, &str)], pull_secrets: &[&str]) {
        let template = pod_template(name, containers, init_containers, pull_secrets);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &deployment).await.unwrap();
    }

    /// Creates a Deployment with one container that runs as service account `account`.
    pub async fn deployment_with_account(&self, namespace: &str, name: &str, image: &str, account: &str) {
        let mut template = pod_template(name, &[(name, image)], &[], &[]);
        template["spec"]["serviceAccountName"] = json!(account);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &deployment).await.unwrap();
    }

    /// Creates or updates service account `name` with `pull_secrets` as its imagePullSecrets.
    /// Server-side apply also works on `default`, which the controller-manager may create first.
    pub async fn service_account(&self, namespace: &str, name: &str, pull_secrets: &[&str]) {
        let secrets: Vec<Value> = pull_secrets.iter().map(|name| json!({"name": name})).collect();
        let account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "imagePullSecrets": secrets,
        });
        let params = kube::api::PatchParams::apply("scanner-tests").force();
        Api::<ServiceAccount>::namespaced(self.admin.clone(), namespace).patch(name, &params, &kube::api::Patch::Apply(&account)).await.unwrap();
    }

    /// Creates a `kubernetes.io/dockerconfigjson` Secret with a user name and password for `registry`.
    pub async fn pull_secret(&self, namespace: &str, name: &str, registry: &str, username: &str, password: &str) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json!({"auths": {registry: {"auth": auth}}}).to_string()},
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
    }

    /// Creates a DaemonSet with one container.
    pub async fn daemon_set(&self, namespace: &str, name: &str, image: &str) {
        let template = pod_template(name, &[(name, image)], &[], &[]);
        let daemon_set: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template},
        }))
        .unwrap();
        Api::<DaemonSet>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &daemon_set).await.unwrap();
    }

    /// Creates a CronJob with one container.
    pub async fn cron_job(&self, namespace: &str, name: &str, image: &str) {
        let mut template = pod_template(name, &[(name, image)], &[], &[]);
        template["spec"]["restartPolicy"] = json!("OnFailure");
        let cron_job: CronJob = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {"spec": {"template": template}}},
        }))
        .unwrap();
        Api::<CronJob>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &cron_job).await.unwrap();
    }

    /// Creates a bare Pod with one container.
    pub async fn pod(&self, namespace: &str, name: &str, image: &str) {
        let template = pod_template(name, &[(name, image)], &[], &[]);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": template["spec"],
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.admin.clone(), namespace).create(&PostParams::default(), &pod).await.unwrap();
    }

    /// Returns the images of a Deployment's pod template, by container name.
    pub async fn deployment_images(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        let deployment = Api::<Deployment>::namespaced(self.admin.clone(), namespace).get(name).await.unwrap();
        let spec = deployment.spec.unwrap().template.spec.unwrap();
        spec.init_containers
            .unwrap_or_default()
            .into_iter()
            .chain(spec.containers)
            .map(|container| (container.name, container.image.unwrap_or_default()))
            .collect()
    }
}

fn pod_template(name: &str, containers: &[(&str, &str)], init_containers: &[(&str, &str)], pull_secrets: &[&str]) -> Value {
    let list = |items: &[(&str, &str)]| items.iter().map(|(name, image)| json!({"name": name, "image": image})).collect::<Vec<_>>();
    let secrets: Vec<Value> = pull_secrets.iter().map(|name| json!({"name": name})).collect();
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": list(containers), "initContainers": list(init_containers), "imagePullSecrets": secrets},
    })
}

/// Returns the report row of a workload's container.
pub fn row<'a>(report: &'a Report, kind: &str, name: &str, container: &str) -> &'a Row {
    report
        .rows
        .iter()
        .find(|row| row.workload.kind.to_string() == kind && row.workload.name == name && row.container == container)
        .unwrap_or_else(|| panic!("no row for {kind}/{name} container {container} in {:#?}", report.rows))
}

/// Returns the text of all blocks of the delivered Slack messages.
pub fn delivered_text(slack: &SlackReceiver) -> String {
    slack
        .delivered()
        .iter()
        .flat_map(|message| message.json["blocks"].as_array().cloned().unwrap_or_default())
        .filter_map(|block| block["text"]["text"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}
