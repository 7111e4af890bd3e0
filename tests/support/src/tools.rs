//! The binaries of the test stack.
//!
//! `tests/tools/build.sh` builds kube-apiserver, kube-controller-manager,
//! kubectl, etcd, helm3 and helm4 at the versions of `tests/tools/versions.env`
//! into a cache directory outside the work tree. [`Tools::locate`] finds that
//! directory with `build.sh --check`, which never builds: a test that needs the
//! tools fails with a message that tells how to build them. The environment
//! variable `IPC_TOOLS_DIR` names another directory with the same binaries.
//!
//! The registries come from Debian's `docker-registry` package
//! (`tests/tools/install-deps.sh`); `IPC_DOCKER_REGISTRY` names another binary.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable that overrides the tools directory.
pub const TOOLS_DIR_ENV: &str = "IPC_TOOLS_DIR";
/// The environment variable that overrides the `docker-registry` binary.
pub const DOCKER_REGISTRY_ENV: &str = "IPC_DOCKER_REGISTRY";

const BINARIES: [&str; 6] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "helm3",
    "helm4",
];

/// Paths to the binaries of the test stack.
#[derive(Clone, Debug)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// Finds the built tools, from `IPC_TOOLS_DIR` or from
    /// `tests/tools/build.sh --check`, and checks that every binary is there.
    ///
    /// The result is computed once per test binary.
    pub fn locate() -> Result<Tools> {
        static LOCATED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let located = LOCATED.get_or_init(|| locate_dir().map_err(|error| error.to_string()));
        match located {
            Ok(dir) => Ok(Tools { dir: dir.clone() }),
            Err(message) => Err(Error::ToolsMissing(message.clone())),
        }
    }

    /// Uses the binaries in `dir`, after checking that each one is there.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Tools> {
        let dir = dir.into();
        check_dir(&dir)?;
        Ok(Tools { dir })
    }

    /// Returns the directory that contains the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the path of `kube-apiserver`.
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }

    /// Returns the path of `kube-controller-manager`.
    pub fn kube_controller_manager(&self) -> PathBuf {
        self.dir.join("kube-controller-manager")
    }

    /// Returns the path of `kubectl`, built from the same release as the API server.
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }

    /// Returns the path of `etcd`.
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// Returns the path of the Helm 3 binary.
    pub fn helm3(&self) -> PathBuf {
        self.dir.join("helm3")
    }

    /// Returns the path of the Helm 4 binary.
    pub fn helm4(&self) -> PathBuf {
        self.dir.join("helm4")
    }

    /// Returns the path of Debian's `docker-registry`, or `IPC_DOCKER_REGISTRY`.
    pub fn docker_registry() -> Result<PathBuf> {
        let path = std::env::var_os(DOCKER_REGISTRY_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::ToolsMissing(format!(
                "{} is missing: run tests/tools/install-deps.sh (Debian's docker-registry package) or set {DOCKER_REGISTRY_ENV}",
                path.display()
            )))
        }
    }

    /// Returns the directory of the repository's `tests/tools`.
    pub fn source_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools")
    }
}

fn locate_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(TOOLS_DIR_ENV) {
        let dir = PathBuf::from(dir);
        check_dir(&dir)?;
        return Ok(dir);
    }
    let script = Tools::source_dir().join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .output()
        .map_err(|error| Error::io(format!("cannot run {}", script.display()), error))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().last().unwrap_or_default().trim();
    if !output.status.success() || last_line.is_empty() {
        return Err(Error::ToolsMissing(format!(
            "the test stack's tools are not built: run tests/tools/build.sh once \
             (it builds Kubernetes, etcd and Helm from the Go module proxy, about 15 minutes on 2 cores), \
             or set {TOOLS_DIR_ENV} to a directory that contains {}. Output of build.sh --check: {}",
            BINARIES.join(", "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let dir = PathBuf::from(last_line);
    check_dir(&dir)?;
    Ok(dir)
}

fn check_dir(dir: &Path) -> Result<()> {
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::ToolsMissing(format!(
            "{} lacks {}: run tests/tools/build.sh",
            dir.display(),
            missing.join(", ")
        )))
    }
}
