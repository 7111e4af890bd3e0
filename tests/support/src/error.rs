//! The error type of the test stack.

use std::path::PathBuf;
use std::process::ExitStatus;

/// A failure to locate, start, drive or reach a component of the test stack.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary that the stack needs is not installed or not built.
    #[error("{0}")]
    ToolsMissing(String),
    /// A file or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, with the path or program involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command such as `kubectl`, `helm` or `openssl` exited unsuccessfully.
    #[error("`{command}` failed with {status}: {stderr}")]
    CommandFailed {
        /// The program and its arguments.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A component exited or did not become ready while starting.
    #[error("{component} did not start: {reason}; log {log}:\n{log_tail}", log = log.display())]
    Startup {
        /// The component, such as `kube-apiserver`.
        component: String,
        /// Why it is considered failed.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A request to the API server failed.
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    /// A kubeconfig could not be loaded.
    #[error("cannot load kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A request to an OCI registry failed.
    #[error("OCI registry request failed")]
    Oci(#[from] oci_client::errors::OciDistributionError),
    /// An HTTP request to a component failed.
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    /// A component returned something the stack cannot use.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    /// Something expected did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// The result type of the test stack.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
