//! A Mojaloop-shaped hub on the local test stack, with the product installed from
//! its manifests and its two binaries running as their service accounts.
//!
//! ```text
//!  Hub::start ── Cluster (etcd, kube-apiserver, kube-controller-manager)
//!      │         Registry (mojaloop/* and library/redis images), SlackReceiver
//!      ▼
//!  install ──── kubectl apply --server-side -k manifests/
//!      │        + kubectl create -f manifests/examples/approvals.yaml
//!      │        + a copy of manifests/ with an overlay that only sets
//!      │          clientConfig.url to https://127.0.0.1:PORT (no Service reaches a
//!      │          local process) and adds the scanner's rollout component
//!      │        + certs-script/certs.sh (serving certificate and caBundle)
//!      ▼
//!  image-patch-webhook (child process, webhook ServiceAccount token)
//!  image-patch-scanner (child process per scan, scanner ServiceAccount token,
//!                       the CronJob's args and env)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tempfile::TempDir;
use testsupport::wait::eventually;
use testsupport::{Cluster, Registry, SlackReceiver};

use crate::process::{Binaries, ChildProcess};

/// The product's namespace.
pub const SYSTEM: &str = "image-patch-system";
/// The opted-in namespace of the hub's release.
pub const HUB: &str = "mojaloop";
/// A namespace that did not opt in.
pub const OUTSIDE: &str = "outside";
/// Helm release name in both namespaces.
pub const RELEASE: &str = "hub";
/// The four Mojaloop services of the chart.
pub const SERVICES: [&str; 4] = [
    "quoting-service",
    "central-ledger",
    "account-lookup-service",
    "ml-api-adapter",
];
/// The third-party image, the chart's sidecar of ml-api-adapter.
pub const REDIS: &str = "library/redis";
/// Tags of every Mojaloop repository: a base version, two patches, snapshots and a
/// newer release. quoting-service gets a third patch.
pub const MOJALOOP_TAGS: [&str; 6] = [
    "v10.4.0",
    "v10.4.0.1-patch",
    "v10.4.0.2-patch",
    "v10.4.0-snapshot.1",
    "v10.4.0.160-snapshot.7",
    "v10.5.0",
];
/// Tags of the third-party image, versioned `semver-patch`.
pub const REDIS_TAGS: [&str; 4] = ["7.2.4", "7.2.5", "7.2.6", "7.3.0"];
/// Label that opts a namespace in.
pub const OPT_IN_LABEL: &str = "patches.mojaloop.io/enabled";

/// Which Helm major runs the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helm {
    /// Helm 3: client-side three-way merge patches.
    V3,
    /// Helm 4: server-side apply.
    V4,
}

impl std::fmt::Display for Helm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Helm::V3 => "Helm 3",
            Helm::V4 => "Helm 4",
        })
    }
}

/// Which rules of the webhook configuration are installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRules {
    /// `manifests/`: Pods and workload templates.
    Workloads,
    /// `manifests/overlays/pods-only`: Pods only.
    PodsOnly,
}

/// Output of a command that succeeded.
#[derive(Clone, Debug)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error: warnings, also the API server's admission warnings.
    pub stderr: String,
}

/// One finished scan.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The report, as the scanner prints it with `--output=json`.
    pub report: Value,
    /// The scanner's log.
    pub log: String,
}

impl Scan {
    /// Returns the report row of a container of a Deployment in `namespace`.
    pub fn row(&self, namespace: &str, deployment: &str, container: &str) -> Option<&Value> {
        self.report["rows"].as_array()?.iter().find(|row| {
            row["namespace"] == namespace
                && row["kind"] == "Deployment"
                && row["name"] == deployment
                && row["container"] == container
        })
    }

    /// Returns the status of a container of a Deployment, or "" when no row names it.
    pub fn status(&self, namespace: &str, deployment: &str, container: &str) -> String {
        self.row(namespace, deployment, container)
            .and_then(|row| row["status"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The running hub: the stack, the product's manifests and the webhook process.
pub struct Hub {
    /// Which Helm runs the chart.
    pub helm: Helm,
    /// The control plane.
    pub cluster: Cluster,
    /// The plain registry with the hub's images.
    pub registry: Registry,
    /// The Slack stand-in.
    pub slack: SlackReceiver,
    /// Digests of the pushed images, by `repository:tag`.
    pub digests: BTreeMap<String, String>,
    binaries: Binaries,
    dir: TempDir,
    webhook_port: u16,
    webhook: Option<ChildProcess>,
    scanner_kubeconfig: Option<PathBuf>,
    webhook_kubeconfig: Option<PathBuf>,
    insecure_registries: Vec<String>,
}

/// Returns the repository root.
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns the chart shaped like Mojaloop's.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chart")
}

impl Hub {
    /// Starts the control plane, the registry and the Slack receiver, pushes the
    /// images and creates the hub's two namespaces. Nothing of the product runs yet.
    pub async fn start(helm: Helm) -> Result<Hub> {
        // reqwest and kube pick no rustls provider themselves; an error means that
        // one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let binaries = Binaries::locate()?;
        let cluster = Cluster::start().await.context("the control plane starts")?;
        let registry = Registry::start_plain().await.context("the registry starts")?;
        let slack = SlackReceiver::start().await.context("the Slack receiver starts")?;
        let dir = tempfile::Builder::new().prefix("ipc-e2e-").tempdir()?;
        let webhook_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut hub = Hub {
            helm,
            insecure_registries: vec![registry.address().to_owned()],
            cluster,
            registry,
            slack,
            digests: BTreeMap::new(),
            binaries,
            dir,
            webhook_port,
            webhook: None,
            scanner_kubeconfig: None,
            webhook_kubeconfig: None,
        };
        hub.seed_images().await?;
        hub.cluster
            .create_namespace(HUB, &[(OPT_IN_LABEL, "true")])
            .await
            .context("namespace mojaloop is created")?;
        hub.cluster
            .create_namespace(OUTSIDE, &[])
            .await
            .context("namespace outside is created")?;
        Ok(hub)
    }

    async fn seed_images(&mut self) -> Result<()> {
        let auth = self.registry.auth();
        for service in SERVICES {
            let repository = format!("mojaloop/{service}");
            let mut tags = MOJALOOP_TAGS.to_vec();
            if service == "quoting-service" {
                tags.push("v10.4.0.3-patch");
            }
            let digests = testsupport::seed::push_image(self.registry.address(), &repository, &tags, &auth)
                .await
                .with_context(|| format!("images of {repository} are pushed"))?;
            for (tag, digest) in tags.iter().zip(digests) {
                self.digests.insert(format!("{repository}:{tag}"), digest.to_string());
            }
        }
        let digests = testsupport::seed::push_image(self.registry.address(), REDIS, &REDIS_TAGS, &auth)
            .await
            .context("images of library/redis are pushed")?;
        for (tag, digest) in REDIS_TAGS.iter().zip(digests) {
            self.digests.insert(format!("{REDIS}:{tag}"), digest.to_string());
        }
        Ok(())
    }

    /// Returns the registry-qualified repository, as images and approvals name it.
    pub fn repository(&self, repository: &str) -> String {
        format!("{}/{repository}", self.registry.address())
    }

    /// Returns the registry-qualified image reference.
    pub fn image(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.registry.address())
    }

    /// Returns the digest of a pushed `repository:tag`.
    pub fn digest(&self, repository: &str, tag: &str) -> String {
        self.digests
            .get(&format!("{repository}:{tag}"))
            .cloned()
            .unwrap_or_else(|| panic!("{repository}:{tag} was not pushed"))
    }

    /// Returns the hub's working directory (generated overlays, certificates, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a registry that the scanner reads over plain http.
    pub fn add_insecure_registry(&mut self, address: &str) {
        self.insecure_registries.push(address.to_owned());
    }

    /// Installs the product as a user would. Applies `manifests/` server-side and
    /// creates the approvals ConfigMap from its example. Then applies the local
    /// overlay with the webhook's `clientConfig.url` and the scanner's rollout RBAC,
    /// runs the certs script, creates the Slack Secret and writes the
    /// service-account kubeconfigs.
    pub async fn install(&mut self) -> Result<()> {
        let manifests = repository_root().join("manifests");
        self.kubectl(&["apply", "--server-side", "-k", path_str(&manifests)])
            .await
            .context("kubectl apply --server-side -k manifests/")?;
        let example = repository_root().join("manifests/examples/approvals.yaml");
        self.kubectl(&["create", "-f", path_str(&example)])
            .await
            .context("kubectl create -f manifests/examples/approvals.yaml")?;
        self.apply_local_overlay(WebhookRules::Workloads).await?;

        let url = self.slack.url();
        self.kubectl(&[
            "-n",
            SYSTEM,
            "create",
            "secret",
            "generic",
            "image-patch-slack",
            &format!("--from-literal=webhook-url={url}"),
        ])
        .await
        .context("the Slack Secret is created")?;

        self.webhook_kubeconfig = Some(
            self.cluster
                .service_account_kubeconfig(SYSTEM, "image-patch-webhook")
                .await
                .context("the webhook's ServiceAccount gets a token")?,
        );
        self.scanner_kubeconfig = Some(
            self.cluster
                .service_account_kubeconfig(SYSTEM, "image-patch-scanner")
                .await
                .context("the scanner's ServiceAccount gets a token")?,
        );
        Ok(())
    }

    /// Applies a copy of `manifests/` with an overlay that points the webhook at
    /// this machine's webhook process and adds the scanner's rollout component, then
    /// runs the certs script so that the caBundle matches the serving certificate.
    ///
    /// Kustomize accepts only relative paths to bases, so the overlay lives next to
    /// a copy of the manifests in the hub's directory.
    pub async fn apply_local_overlay(&self, rules: WebhookRules) -> Result<()> {
        let root = self.dir().join("kustomize");
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        copy_dir(&repository_root().join("manifests"), &root.join("manifests"))?;
        // The pods-only overlay turns the scanner's rollout on by itself.
        let (base, components) = match rules {
            WebhookRules::Workloads => ("../manifests", "components:\n  - ../manifests/scanner/components/rollout\n"),
            WebhookRules::PodsOnly => ("../manifests/overlays/pods-only", ""),
        };
        let port = self.webhook_port;
        let overlay = format!(
            "# Generated by the end-to-end suite: the product's manifests, with the webhook\n\
             # reached on 127.0.0.1 and the scanner allowed to roll out.\n\
             apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n  - {base}\n\
             {components}\
             patches:\n\
             \x20 - target:\n      kind: MutatingWebhookConfiguration\n      name: image-patch-webhook\n\
             \x20   patch: |-\n\
             \x20     - op: replace\n        path: /webhooks/0/clientConfig\n        value: {{url: \"https://127.0.0.1:{port}/mutate\"}}\n\
             \x20     - op: replace\n        path: /webhooks/1/clientConfig\n        value: {{url: \"https://127.0.0.1:{port}/audit\"}}\n"
        );
        let overlay_dir = root.join("local");
        std::fs::create_dir_all(&overlay_dir)?;
        std::fs::write(overlay_dir.join("kustomization.yaml"), overlay)?;
        self.kubectl(&["apply", "--server-side", "-k", path_str(&overlay_dir)])
            .await
            .with_context(|| format!("the local overlay ({rules:?}) applies"))?;
        self.run_certs_script().await
    }

    async fn run_certs_script(&self) -> Result<()> {
        let script = repository_root().join("certs-script/certs.sh");
        let path = format!(
            "{}:{}",
            self.cluster.tools().dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = tokio::process::Command::new("bash")
            .arg(script)
            .args(["--ip", "127.0.0.1", "--dir"])
            .arg(self.certs_dir())
            .env("PATH", path)
            .env("KUBECONFIG", self.cluster.kubeconfig_path())
            .output()
            .await
            .context("certs-script/certs.sh runs")?;
        if !output.status.success() {
            bail!(
                "certs-script/certs.sh failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir().join("certs")
    }

    /// Returns the kubeconfig of a product ServiceAccount (`image-patch-webhook` or
    /// `image-patch-scanner`) written by [`Hub::install`].
    pub fn service_account_kubeconfig(&self, name: &str) -> Result<&Path> {
        let path = match name {
            "image-patch-webhook" => &self.webhook_kubeconfig,
            "image-patch-scanner" => &self.scanner_kubeconfig,
            _ => bail!("no kubeconfig for ServiceAccount {name}"),
        };
        path.as_deref().context("Hub::install has not run")
    }

    /// Starts the webhook binary on 127.0.0.1 with the webhook's ServiceAccount and
    /// waits until `/readyz` returns 200 over TLS.
    pub async fn start_webhook(&mut self) -> Result<()> {
        ensure!(self.webhook.is_none(), "the webhook is already running");
        let kubeconfig = self.service_account_kubeconfig("image-patch-webhook")?.to_owned();
        let certs = self.certs_dir();
        let mut command = Command::new(&self.binaries.webhook);
        command
            .arg(format!("--listen=127.0.0.1:{}", self.webhook_port))
            .arg(format!("--tls-cert={}", certs.join("tls.crt").display()))
            .arg(format!("--tls-key={}", certs.join("tls.key").display()))
            .arg("--log-format=plain")
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", SYSTEM)
            .env("RUST_LOG", "info");
        let mut process = ChildProcess::spawn("image-patch-webhook", command, &self.dir().join("webhook.log"))?;

        let ca = std::fs::read(certs.join("ca.crt")).context("the certs script wrote ca.crt")?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("https://127.0.0.1:{}/readyz", self.webhook_port);
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                break;
            }
            if process.has_exited() || started.elapsed() > Duration::from_secs(30) {
                process.print_log_tail(40);
                bail!("the webhook did not become ready on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.webhook = Some(process);
        Ok(())
    }

    /// Stops the webhook with SIGTERM, as a rollout or an outage would.
    pub async fn stop_webhook(&mut self) -> Result<()> {
        match self.webhook.take() {
            Some(process) => process.stop().await,
            None => Ok(()),
        }
    }

    /// Runs one scan as the CronJob would: the CronJob's args and env, the
    /// scanner's ServiceAccount token, plus the local registry as insecure and
    /// `extra` flags. Returns the JSON report and the log.
    pub async fn scan(&self, extra: &[&str]) -> Result<Scan> {
        let kubeconfig = self.service_account_kubeconfig("image-patch-scanner")?;
        let cron_job = self.get_json(&["-n", SYSTEM, "get", "cronjob", "image-patch-scanner"]).await?;
        let container = &cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let mut command = tokio::process::Command::new(&self.binaries.scanner);
        for arg in container["args"].as_array().into_iter().flatten() {
            command.arg(arg.as_str().context("a CronJob arg is a string")?);
        }
        for variable in container["env"].as_array().into_iter().flatten() {
            let name = variable["name"].as_str().context("an env entry has a name")?;
            let value = match (&variable["value"], &variable["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(value), _) => value.clone(),
                (_, Value::String(field)) if field == "metadata.namespace" => SYSTEM.to_owned(),
                _ => bail!("the CronJob's env {name} has a source the suite cannot resolve"),
            };
            command.env(name, value);
        }
        command
            .arg("--output=json")
            .arg("--cluster-name=e2e-hub")
            .arg(format!("--insecure-registry={}", self.insecure_registries.join(",")))
            .arg("--registry-attempts=2")
            .arg("--registry-backoff-ms=100")
            .arg("--slack-timeout=5")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .context("the scan timed out after 120 s")?
            .context("the scanner runs")?;
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        std::fs::write(self.dir().join("scanner.log"), &log).ok();
        if !output.status.success() {
            bail!("the scanner exited with {}: {log}", output.status);
        }
        let report = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("the scanner's stdout is a JSON report: {}", String::from_utf8_lossy(&output.stdout)))?;
        Ok(Scan { report, log })
    }

    /// Runs `kubectl` as the admin.
    pub async fn kubectl(&self, args: &[&str]) -> Result<CommandOutput> {
        run(self.cluster.kubectl_command(), args).await
    }

    /// Runs `kubectl` with another kubeconfig (a ServiceAccount's), returning the
    /// output whether or not the command succeeded, and its success.
    pub async fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<(bool, CommandOutput)> {
        let mut command = self.cluster.kubectl_command();
        command.env("KUBECONFIG", kubeconfig).args(args);
        let output = command.output().await.context("kubectl runs")?;
        Ok((
            output.status.success(),
            CommandOutput {
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
        ))
    }

    /// Runs `kubectl ... -o json` and parses the output.
    pub async fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let output = self.kubectl(&args).await?;
        Ok(serde_json::from_str(&output.stdout)?)
    }

    /// Runs the hub's Helm major with `args`.
    pub async fn helm(&self, args: &[&str]) -> Result<CommandOutput> {
        let command = match self.helm {
            Helm::V3 => self.cluster.helm3_command(),
            Helm::V4 => self.cluster.helm4_command(),
        };
        run(command, args).await
    }

    /// Installs or upgrades the chart as release `hub` in `namespace`, with the
    /// local registry and `extra` flags (such as `--set services.NAME=null`).
    pub async fn helm_upgrade(&self, namespace: &str, extra: &[&str]) -> Result<CommandOutput> {
        let registry = format!("imageRegistry={}", self.registry.address());
        let chart = chart_dir();
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            path_str(&chart),
            "--namespace",
            namespace,
            "--set",
            &registry,
        ];
        args.extend(extra);
        self.helm(&args).await
    }

    /// Writes the approvals document with `kubectl patch`, as an operator would.
    pub async fn set_approvals(&self, document: &str) -> Result<()> {
        let patch = json!({"data": {"approvals.yaml": document}}).to_string();
        self.kubectl(&["-n", SYSTEM, "patch", "configmap", "image-patch-approvals", "--type=merge", "-p", &patch])
            .await
            .context("kubectl patch of the approvals ConfigMap")?;
        Ok(())
    }

    /// Returns the approvals document.
    pub async fn approvals(&self) -> Result<String> {
        let config_map = self.get_json(&["-n", SYSTEM, "get", "configmap", "image-patch-approvals"]).await?;
        Ok(config_map["data"]["approvals.yaml"].as_str().unwrap_or_default().to_owned())
    }

    /// Returns the image a Pod with `image` would get in `namespace`, by a
    /// server-side dry run that goes through the webhook.
    pub async fn dry_run_pod_image(&self, namespace: &str, image: &str) -> Result<String> {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "dry-run", "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": image}]}
        });
        let path = self.dir().join("dry-run-pod.json");
        std::fs::write(&path, pod.to_string())?;
        let output = self.kubectl(&["create", "--dry-run=server", "-o", "json", "-f", path_str(&path)]).await?;
        let object: Value = serde_json::from_str(&output.stdout)?;
        Ok(object["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until a Pod with `image` in `namespace` is admitted with `expected`,
    /// which shows that the webhook has loaded an approvals edit.
    pub async fn wait_for_pod_image(&self, namespace: &str, image: &str, expected: &str) -> Result<()> {
        eventually(&format!("a Pod with {image} to be admitted as {expected}"), Duration::from_secs(30), || async {
            Ok(self.dry_run_pod_image(namespace, image).await? == expected)
        })
        .await?;
        Ok(())
    }

    /// Returns the Deployment.
    pub async fn deployment(&self, namespace: &str, name: &str) -> Result<Value> {
        self.get_json(&["-n", namespace, "get", "deployment", name]).await
    }

    /// Returns the images of a Deployment's pod template by container name, init
    /// containers included.
    pub async fn deployment_images(&self, namespace: &str, name: &str) -> Result<BTreeMap<String, String>> {
        let deployment = self.deployment(namespace, name).await?;
        Ok(pod_spec_images(&deployment["spec"]["template"]["spec"]))
    }

    /// Waits until the controller-manager has created Pods of the Deployment's
    /// newest ReplicaSet, and returns the images of those Pods by container name.
    pub async fn newest_pod_images(&self, namespace: &str, name: &str) -> Result<BTreeMap<String, String>> {
        let started = Instant::now();
        loop {
            if let Some(images) = self.try_newest_pod_images(namespace, name).await? {
                return Ok(images);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("timed out after 60 s waiting for Pods of the newest ReplicaSet of {namespace}/{name}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_newest_pod_images(&self, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let selector = format!("app.kubernetes.io/name={name}");
        let deployment = self.deployment(namespace, name).await?;
        let revision = &deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"];
        let replica_sets = self.get_json(&["-n", namespace, "get", "replicasets", "-l", &selector]).await?;
        let newest = replica_sets["items"].as_array().into_iter().flatten().find(|replica_set| {
            !revision.is_null() && replica_set["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == *revision
        });
        let Some(newest) = newest else {
            return Ok(None);
        };
        let uid = &newest["metadata"]["uid"];
        let pods = self.get_json(&["-n", namespace, "get", "pods", "-l", &selector]).await?;
        let pod = pods["items"].as_array().into_iter().flatten().find(|pod| {
            pod["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|owner| owner["uid"] == *uid)
        });
        Ok(pod.map(|pod| pod_spec_images(&pod["spec"])))
    }

    /// Returns the number of ReplicaSets of a Deployment.
    pub async fn replica_set_count(&self, namespace: &str, name: &str) -> Result<usize> {
        let replica_sets = self
            .get_json(&["-n", namespace, "get", "replicasets", "-l", &format!("app.kubernetes.io/name={name}")])
            .await?;
        Ok(replica_sets["items"].as_array().map_or(0, Vec::len))
    }

    /// Stops the webhook and the stack.
    pub async fn shut_down(mut self) -> Result<()> {
        let stopped = self.stop_webhook().await;
        self.cluster.stop();
        stopped
    }
}

/// Returns the images of a pod spec by container name, init containers included.
pub fn pod_spec_images(spec: &Value) -> BTreeMap<String, String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default())
        .map(|container| {
            (
                container["name"].as_str().unwrap_or_default().to_owned(),
                container["image"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn run(mut command: tokio::process::Command, args: &[&str]) -> Result<CommandOutput> {
    command.args(args);
    let output = command.output().await.with_context(|| format!("cannot run {args:?}"))?;
    let result = CommandOutput {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if !output.status.success() {
        bail!("{args:?} failed with {}: {}{}", output.status, result.stderr, result.stdout);
    }
    Ok(result)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("paths of the suite are UTF-8")
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
