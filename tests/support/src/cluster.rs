//! A Kubernetes control plane on loopback, started the way controller-runtime's
//! envtest starts one, plus the controller-manager.
//!
//! ```text
//!  Pki::create ─> etcd (http://127.0.0.1:free) ─> kube-apiserver (https://127.0.0.1:free)
//!                                                   │ RBAC, client-certificate users,
//!                                                   │ service-account tokens, admission
//!                                                   ▼
//!                            kube-controller-manager (its own client certificate)
//! ```
//!
//! The admin kubeconfig authenticates with a client certificate in
//! `system:masters`. [`Cluster::service_account_kubeconfig`] writes a kubeconfig
//! with a TokenRequest token, so that a product component runs with exactly the
//! RBAC that its manifests grant. The controller-manager runs the usual
//! controllers with per-controller service-account credentials. There is no
//! scheduler and no kubelet, so Pods are stored and stay `Pending`.

use crate::pki::{KeyPair, Pki};
use crate::ports::free_port;
use crate::process::{ManagedProcess, print_log_tail};
use crate::tools::Tools;
use crate::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tempfile::TempDir;

/// How long each component may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Lifetime requested for service-account tokens.
const TOKEN_SECONDS: i64 = 24 * 60 * 60;
/// Controllers that only do something with a cloud provider, which none runs here.
const CLOUD_CONTROLLERS: [&str; 3] = [
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
];

/// Options of [`Cluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Extra `kube-apiserver` flags, such as `--feature-gates=...`.
    pub apiserver_args: Vec<String>,
    /// Extra `kube-controller-manager` flags.
    pub controller_manager_args: Vec<String>,
}

/// A certificate and its private key, as PEM text and as files.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS #8, P-256).
    pub key_pem: String,
    /// The file that contains `cert_pem`.
    pub cert_path: PathBuf,
    /// The file that contains `key_pem`.
    pub key_path: PathBuf,
}

/// A running control plane: etcd, kube-apiserver and kube-controller-manager.
///
/// Dropping it stops the three processes. When the test is panicking, the tail
/// of each log is printed to stderr and the state directory is kept.
pub struct Cluster {
    // Field order is drop order: the controller-manager first, etcd last.
    controller_manager: ManagedProcess,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    dir: Option<TempDir>,
    /// The directory once it is no longer removed on drop.
    kept_dir: Option<PathBuf>,
    tools: Tools,
    pki: Pki,
    certificates_issued: AtomicUsize,
    server_url: String,
    ca_pem: String,
    admin_kubeconfig: PathBuf,
    admin_config: kube::Config,
}

impl Cluster {
    /// Starts a control plane with default options.
    pub async fn start() -> Result<Cluster> {
        Cluster::start_with(ClusterOptions::default()).await
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager on free loopback
    /// ports and waits until the API server is ready and the controller-manager
    /// has created the `default` ServiceAccount of the `default` namespace.
    ///
    /// A start that fails because another process took a port in between is
    /// retried with new ports, up to three attempts in all.
    #[tracing::instrument(skip_all)]
    pub async fn start_with(options: ClusterOptions) -> Result<Cluster> {
        crate::ports::retry_on_port_conflict(|| Cluster::start_once(&options)).await
    }

    async fn start_once(options: &ClusterOptions) -> Result<Cluster> {
        let tools = Tools::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("ipc-cluster-")
            .tempdir()
            .map_err(|error| Error::io("cannot create a temporary directory", error))?;
        let root = dir.path().to_owned();
        let pki = Pki::create(&root.join("pki"))?;
        let ca_pem = read_to_string(&pki.ca.cert)?;

        let etcd_client_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd_command = Command::new(tools.etcd());
        etcd_command.args([
            "--name=default".to_owned(),
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=default={etcd_peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        let mut etcd = ManagedProcess::spawn("etcd", etcd_command, &root.join("etcd.log"))?;
        crate::install_crypto_provider();
        let health_client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let etcd_health = format!("{etcd_url}/health");
        etcd.wait_ready(STARTUP_TIMEOUT, || async {
            matches!(health_client.get(&etcd_health).send().await, Ok(response) if response.status().is_success())
        })
        .await?;

        let apiserver_port = free_port()?;
        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let mut apiserver_command = Command::new(tools.kube_apiserver());
        apiserver_command.args([
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.apiserver.cert.display()),
            format!("--tls-private-key-file={}", pki.apiserver.key.display()),
            format!("--client-ca-file={}", pki.ca.cert.display()),
            format!("--secure-port={apiserver_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            format!("--service-account-issuer={server_url}"),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--allow-privileged=true".to_owned(),
            // The `kubernetes` Service's endpoints would be 127.0.0.1, which
            // endpoint validation rejects, and nothing here needs them.
            "--endpoint-reconciler-type=none".to_owned(),
            "--profiling=false".to_owned(),
        ]);
        apiserver_command.args(&options.apiserver_args);
        let mut apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            apiserver_command,
            &root.join("kube-apiserver.log"),
        )?;

        let admin_kubeconfig = root.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &server_url,
            &ca_pem,
            "image-patch-test-admin",
            KubeconfigUser::ClientCertificate {
                cert: &read_to_string(&pki.admin.cert)?,
                key: &read_to_string(&pki.admin.key)?,
            },
        )?;
        let admin_config = config_from_kubeconfig(&admin_kubeconfig).await?;
        let client = kube::Client::try_from(admin_config.clone())?;
        apiserver
            .wait_ready(STARTUP_TIMEOUT, || async {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("static request");
                matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
            })
            .await?;

        let controller_manager_kubeconfig = root.join("controller-manager.kubeconfig");
        write_kubeconfig(
            &controller_manager_kubeconfig,
            &server_url,
            &ca_pem,
            "system:kube-controller-manager",
            KubeconfigUser::ClientCertificate {
                cert: &read_to_string(&pki.controller_manager.cert)?,
                key: &read_to_string(&pki.controller_manager.key)?,
            },
        )?;
        let controller_manager_port = free_port()?;
        let controllers = std::iter::once("*".to_owned())
            .chain(CLOUD_CONTROLLERS.iter().map(|name| format!("-{name}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut controller_manager_command = Command::new(tools.kube_controller_manager());
        controller_manager_command.args([
            format!("--kubeconfig={}", controller_manager_kubeconfig.display()),
            format!(
                "--authentication-kubeconfig={}",
                controller_manager_kubeconfig.display()
            ),
            format!(
                "--authorization-kubeconfig={}",
                controller_manager_kubeconfig.display()
            ),
            format!(
                "--cert-dir={}",
                root.join("controller-manager-certs").display()
            ),
            format!("--secure-port={controller_manager_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--use-service-account-credentials=true".to_owned(),
            format!("--controllers={controllers}"),
            format!(
                "--service-account-private-key-file={}",
                pki.service_account_key.display()
            ),
            format!("--root-ca-file={}", pki.ca.cert.display()),
            format!("--cluster-signing-cert-file={}", pki.ca.cert.display()),
            format!("--cluster-signing-key-file={}", pki.ca.key.display()),
            "--leader-elect=false".to_owned(),
            "--profiling=false".to_owned(),
        ]);
        controller_manager_command.args(&options.controller_manager_args);
        let mut controller_manager = ManagedProcess::spawn(
            "kube-controller-manager",
            controller_manager_command,
            &root.join("kube-controller-manager.log"),
        )?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        controller_manager
            .wait_ready(STARTUP_TIMEOUT, || async {
                matches!(service_accounts.get_opt("default").await, Ok(Some(_)))
            })
            .await?;

        tracing::info!(%server_url, dir = %root.display(), "control plane ready");
        Ok(Cluster {
            controller_manager,
            apiserver,
            etcd,
            dir: Some(dir),
            kept_dir: None,
            tools,
            pki,
            certificates_issued: AtomicUsize::new(0),
            server_url,
            ca_pem,
            admin_kubeconfig,
            admin_config,
        })
    }

    /// Returns a control plane shared by every test of the test binary, started
    /// by the first test that requests it.
    ///
    /// Sharing saves the start (about ten seconds on 2 cores) per test, so give
    /// each test its own namespaces. A shared cluster is never dropped: its
    /// processes die with the test binary, and an exit handler removes its
    /// directory unless `IPC_KEEP_STACK` is set. Call [`Cluster::print_logs`]
    /// when a test fails, because no drop prints them.
    pub async fn shared() -> Result<&'static Cluster> {
        static SHARED: tokio::sync::OnceCell<Cluster> = tokio::sync::OnceCell::const_new();
        SHARED
            .get_or_try_init(|| async {
                let mut cluster = Cluster::start().await?;
                let dir = cluster
                    .dir
                    .take()
                    .expect("a new cluster has its directory")
                    .keep();
                eprintln!("shared cluster state and logs in {}", dir.display());
                crate::process::remove_at_exit(dir.clone(), cluster.pids());
                cluster.kept_dir = Some(dir);
                Ok(cluster)
            })
            .await
    }

    /// Returns the API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Returns the PEM certificate of the CA that signed the API server's certificate
    /// and that the API server trusts for client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues a serving certificate for `hosts` (IP addresses or DNS names)
    /// signed by the cluster's CA, so that a webhook server started by a test
    /// is trusted with [`Cluster::ca_pem`] as its `caBundle`.
    pub fn issue_serving_certificate(&self, hosts: &[&str]) -> Result<CertifiedKey> {
        let number = self.certificates_issued.fetch_add(1, Ordering::Relaxed);
        let pair: KeyPair =
            self.pki
                .issue_serving(&self.dir().join("pki"), &format!("serving-{number}"), hosts)?;
        Ok(CertifiedKey {
            cert_pem: read_to_string(&pair.cert)?,
            key_pem: read_to_string(&pair.key)?,
            cert_path: pair.cert,
            key_path: pair.key,
        })
    }

    /// Returns the admin kubeconfig (a client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Returns the cluster's state directory: PKI, kubeconfigs, etcd data and logs.
    pub fn dir(&self) -> &Path {
        match (&self.dir, &self.kept_dir) {
            (Some(dir), _) => dir.path(),
            (None, Some(kept)) => kept,
            (None, None) => unreachable!("the directory lives as long as the cluster"),
        }
    }

    /// Returns the tools the cluster was started with.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Returns a new client with the admin's credentials.
    ///
    /// The client runs a background task on the current tokio runtime, so a
    /// test that shares a cluster with others still gets a client of its own.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.admin_config.clone())
            .expect("the admin configuration built a client when the cluster started")
    }

    /// Creates a namespace with `labels` and waits until the controller-manager
    /// has created its `default` ServiceAccount, which Pods need to be admitted.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<Namespace> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let namespaces: Api<Namespace> = Api::all(self.client());
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(self.client(), name);
        wait_for(
            &format!("the default ServiceAccount of namespace {name}"),
            Duration::from_secs(30),
            || async { matches!(service_accounts.get_opt("default").await, Ok(Some(_))) },
        )
        .await?;
        Ok(created)
    }

    /// Writes a kubeconfig that authenticates as the ServiceAccount
    /// `namespace/name` with a token from the TokenRequest API, and returns its
    /// path. The ServiceAccount must exist, and the token is valid for a day.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let service_accounts: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let response: TokenRequest = service_accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await?;
        let token = response.status.map(|status| status.token).ok_or_else(|| {
            Error::UnexpectedResponse(format!(
                "the TokenRequest for ServiceAccount {namespace}/{name} has no status"
            ))
        })?;
        let path = self
            .dir()
            .join(format!("serviceaccount-{namespace}-{name}.kubeconfig"));
        write_kubeconfig(
            &path,
            &self.server_url,
            &self.ca_pem,
            &format!("system:serviceaccount:{namespace}:{name}"),
            KubeconfigUser::Token(&token),
        )?;
        Ok(path)
    }

    /// Returns a client that authenticates as the ServiceAccount `namespace/name`.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client> {
        let path = self.service_account_kubeconfig(namespace, name).await?;
        client_from_kubeconfig(&path).await
    }

    /// Returns a `kubectl` command with the admin kubeconfig and a discovery
    /// cache inside the cluster's directory.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.tools.kubectl());
        command
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .env("KUBECACHEDIR", self.dir().join("kube-cache"))
            .kill_on_drop(true);
        command
    }

    /// Returns a Helm 3 command with the admin kubeconfig and Helm's cache,
    /// configuration and data inside the cluster's directory.
    pub fn helm3_command(&self) -> tokio::process::Command {
        self.helm_command(self.tools.helm3(), "helm3")
    }

    /// Returns a Helm 4 command, set up like [`Cluster::helm3_command`].
    pub fn helm4_command(&self) -> tokio::process::Command {
        self.helm_command(self.tools.helm4(), "helm4")
    }

    fn helm_command(&self, program: PathBuf, home: &str) -> tokio::process::Command {
        let home = self.dir().join(home);
        let mut command = tokio::process::Command::new(program);
        command
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .kill_on_drop(true);
        command
    }

    /// Runs `kubectl` with `args` as the admin and returns its stdout, or
    /// [`Error::CommandFailed`] with its stderr when it fails.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(self.kubectl_command(), args).await
    }

    /// Runs Helm 3 with `args` and returns its stdout, like [`Cluster::kubectl`].
    pub async fn helm3<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(self.helm3_command(), args).await
    }

    /// Runs Helm 4 with `args` and returns its stdout, like [`Cluster::kubectl`].
    pub async fn helm4<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(self.helm4_command(), args).await
    }

    /// Returns the process ids of etcd, kube-apiserver and kube-controller-manager, for
    /// tests that check that nothing outlives the cluster.
    pub fn pids(&self) -> Vec<u32> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .iter()
            .filter_map(|process| process.pid())
            .collect()
    }

    /// Prints the tail of each component's log to stderr.
    pub fn print_logs(&self) {
        for process in [&self.etcd, &self.apiserver, &self.controller_manager] {
            print_log_tail(process.name(), process.log());
        }
    }

    /// Stops the control plane now instead of on drop.
    pub fn stop(mut self) {
        self.stop_processes();
    }

    fn stop_processes(&mut self) {
        self.controller_manager.stop();
        self.apiserver.stop();
        self.etcd.stop();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each process prints its own log tail when it is dropped during a panic.
        let panicking = std::thread::panicking();
        self.stop_processes();
        if let Some(dir) = self.dir.take()
            && (panicking || crate::process::keep_stack())
        {
            let kept = dir.keep();
            eprintln!("cluster state and full logs kept in {}", kept.display());
        }
    }
}

/// Runs `command` with `args` and returns its stdout if it succeeds.
pub(crate) async fn run<I, S>(mut command: tokio::process::Command, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command.args(args);
    let description = describe(command.as_std());
    tracing::debug!(command = %description, "running");
    let output: Output = command
        .output()
        .await
        .map_err(|error| Error::io(format!("cannot run {description}"), error))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::CommandFailed {
            command: description,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::iter::once(program)
        .chain(
            command
                .get_args()
                .map(|arg| arg.to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `probe` every 100 ms until it returns true or `timeout` passes.
pub(crate) async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !probe().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

enum KubeconfigUser<'a> {
    ClientCertificate { cert: &'a str, key: &'a str },
    Token(&'a str),
}

/// Writes a self-contained kubeconfig with one cluster, user and context.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: KubeconfigUser<'_>,
) -> Result<()> {
    let user_entry = match credentials {
        KubeconfigUser::ClientCertificate { cert, key } => serde_json::json!({
            "client-certificate-data": BASE64.encode(cert),
            "client-key-data": BASE64.encode(key),
        }),
        KubeconfigUser::Token(token) => serde_json::json!({ "token": token }),
    };
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "image-patch-test",
            "cluster": { "server": server, "certificate-authority-data": BASE64.encode(ca_pem) },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{
            "name": "image-patch-test",
            "context": { "cluster": "image-patch-test", "user": user },
        }],
        "current-context": "image-patch-test",
    });
    let text = serde_yaml_ng::to_string(&document).expect("a JSON value encodes as YAML");
    std::fs::write(path, text)
        .map_err(|error| Error::io(format!("cannot write {}", path.display()), error))
}

async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config> {
    crate::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path)?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    Ok(kube::Client::try_from(config_from_kubeconfig(path).await?)?)
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|error| Error::io(format!("cannot read {}", path.display()), error))
}
