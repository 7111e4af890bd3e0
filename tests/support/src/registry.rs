//! OCI registries on loopback: Debian's `docker-registry` (distribution 2.8)
//! with filesystem storage in a temporary directory, plain or with basic auth.
//!
//! distribution 2.8 returns a repository's whole tag list and ignores the `n`
//! and `last` parameters. Put a [`crate::FaultProxy`] in front of it to test
//! paging.

use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::tools::Tools;
use crate::{Error, Result};
use oci_client::secrets::RegistryAuth;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// How long the registry may take to respond to `/v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Cost of the bcrypt hash in the htpasswd file. The lowest keeps tests fast.
const BCRYPT_COST: u32 = 4;

/// A running `docker-registry`, stopped on drop.
pub struct Registry {
    process: ManagedProcess,
    dir: Option<TempDir>,
    address: String,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry that accepts anonymous pulls and pushes.
    pub async fn start_plain() -> Result<Registry> {
        Registry::start(None).await
    }

    /// Starts a registry that requires HTTP basic auth with `user` and `password`
    /// for every request.
    pub async fn start_with_basic_auth(user: &str, password: &str) -> Result<Registry> {
        Registry::start(Some((user.to_owned(), password.to_owned()))).await
    }

    #[tracing::instrument(skip_all, fields(auth = credentials.is_some()))]
    async fn start(credentials: Option<(String, String)>) -> Result<Registry> {
        crate::ports::retry_on_port_conflict(|| Registry::start_once(credentials.clone())).await
    }

    async fn start_once(credentials: Option<(String, String)>) -> Result<Registry> {
        let binary = Tools::docker_registry()?;
        let dir = tempfile::Builder::new()
            .prefix("ipc-registry-")
            .tempdir()
            .map_err(|error| Error::io("cannot create a temporary directory", error))?;
        let root = dir.path();
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {address}\n  secret: image-patch-test-{port}\n\
             health:\n  storagedriver:\n    enabled: false\n",
            storage = root.join("storage").display(),
        );
        if let Some((user, password)) = &credentials {
            let hash = bcrypt::hash(password, BCRYPT_COST).map_err(|error| {
                Error::io(
                    "cannot hash the registry password",
                    std::io::Error::other(error),
                )
            })?;
            let htpasswd = root.join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(|error| {
                Error::io(format!("cannot write {}", htpasswd.display()), error)
            })?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: image-patch-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config)
            .map_err(|error| Error::io(format!("cannot write {}", config_path.display()), error))?;
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config_path);
        let name = if credentials.is_some() {
            "docker-registry (basic auth)"
        } else {
            "docker-registry"
        };
        let mut process = ManagedProcess::spawn(name, command, &root.join("registry.log"))?;
        crate::install_crypto_provider();
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{address}/v2/");
        let expected = if credentials.is_some() { 401 } else { 200 };
        process
            .wait_ready(STARTUP_TIMEOUT, || async {
                matches!(probe.get(&url).send().await, Ok(response) if response.status().as_u16() == expected)
            })
            .await?;
        Ok(Registry {
            process,
            dir: Some(dir),
            address,
            credentials,
        })
    }

    /// Returns the registry's `host:port`, for image references such as
    /// `127.0.0.1:5000/mojaloop/quoting-service:v10.4.0`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns the registry's base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Returns the user name and password, if the registry requires basic auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Credentials for `oci-client`: basic auth or anonymous.
    pub fn auth(&self) -> RegistryAuth {
        match &self.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Returns the registry's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Prints the tail of the registry's log to stderr.
    pub fn print_log(&self) {
        crate::process::print_log_tail(self.process.name(), self.process.log());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.process.stop();
        if let Some(dir) = self.dir.take()
            && (std::thread::panicking() || crate::process::keep_stack())
        {
            eprintln!("registry storage and log kept in {}", dir.keep().display());
        }
    }
}
