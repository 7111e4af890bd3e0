//! The local test stack of image-patch-controller: real components started on
//! loopback for the integration tests, the end-to-end suite, the benchmarks and
//! the demo, on a machine without a Docker engine or internet access.
//!
//! ```text
//!  tests/tools/build.sh ──> Tools (kube-apiserver, kube-controller-manager,
//!                                  kubectl, etcd, helm3, helm4)
//!                              │
//!  Cluster::start() ── etcd ◄── kube-apiserver ◄── kube-controller-manager
//!        │                        ▲   (RBAC, service-account tokens,
//!        │                        │    admission webhooks)
//!        └── kube::Client / kubectl / helm3 / helm4 (admin or a service account)
//!
//!  Registry::start_plain() ─┐
//!  Registry::start_with_basic_auth() ─┤◄── seed::push_image()
//!                           └◄── FaultProxy (pages, 429, stalls, 5xx, truncation)
//!  SlackReceiver (records notices, replies ok, errors, rate limits or nothing)
//! ```
//!
//! Every process binds to 127.0.0.1 on a free port and belongs to the value that
//! started it: dropping that value kills the process and its process group.
//! When the test is panicking at that moment, the tail of each process's log is
//! printed to stderr and the log directory is kept. The processes also receive
//! `SIGKILL` when the test binary dies, so an interrupted run leaves none behind.
//!
//! There is no scheduler and no kubelet: the controller-manager turns
//! Deployments into ReplicaSets and Pods, which pass through admission as in a
//! real cluster, and the Pods stay `Pending`. Tests check stored objects.
#![deny(missing_docs)]

pub mod cluster;
mod error;
pub mod fault_proxy;
mod pki;
mod ports;
mod process;
pub mod registry;
pub mod seed;
pub mod slack;
pub mod tools;
pub mod wait;

pub use cluster::{CertifiedKey, Cluster, ClusterOptions};
pub use error::{Error, Result};
pub use fault_proxy::FaultProxy;
pub use process::KEEP_STACK_ENV;
pub use registry::Registry;
pub use slack::SlackReceiver;
pub use tools::Tools;

/// Installs ring as rustls's process-wide crypto provider, once.
///
/// ring is the one provider compiled into the workspace, but neither reqwest nor
/// kube picks it by itself, so every helper that builds a TLS-capable client calls
/// this first; a test may call it too.
pub fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // An error means that the test already installed a provider, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
