//! The image-patch scanner: a scheduled scan that finds newer security patches of the
//! images that opted-in workloads run, tells Slack once per patch, approves patches
//! itself where a repository's policy says `auto`, and can roll approved patches out.
//!
//! ```text
//!  discovery ──► workload images ──► registry (one tag list per repository)
//!                                         │ newest patch + digest
//!                                         ▼
//!        approve (policy `auto`) ──► rollout (common::decide) ──► report
//!                                         │
//!        state (claim, announce once) ◄── notice ──► slack
//! ```
//!
//! [`scan::run`] drives one scan; the binary only parses options and calls it.
#![deny(missing_docs)]

pub mod approvals_source;
pub mod approve;
pub mod configmap;
pub mod discovery;
pub mod label_selector;
pub mod notice;
pub mod options;
pub mod registry;
pub mod report;
pub mod retry;
pub mod rollout;
pub mod scan;
pub mod secret;
pub mod slack;
pub mod state;

/// Installs ring as the process's rustls crypto provider unless one is installed already.
///
/// ring is the only provider compiled in, but reqwest (under the registry and Slack
/// clients) does not pick one itself, so every client constructor calls this first.
pub fn install_crypto_provider() {
    // An error only means that another provider was installed first; that one is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The field manager name and the `approvedBy` default of automatic approvals.
pub const SCANNER_NAME: &str = "image-patch-scanner";
