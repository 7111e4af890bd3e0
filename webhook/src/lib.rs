//! Mutating admission webhook that rewrites container images to approved patch tags.
//!
//! ```text
//!   kube-apiserver ──HTTPS──► server (TLS, tls::CertificateResolver reloads the files)
//!                               └─► routes::router ──► admission::review ──► decisions ──► common::decide
//!                                                          ▲
//!   ConfigMap / --approvals-file ──► store::ApprovalsStore ┘      metrics::Metrics on /metrics
//! ```
#![deny(missing_docs)]

pub mod admission;
pub mod app;
pub mod decisions;
pub mod images;
pub mod metrics;
pub mod options;
pub mod routes;
pub mod server;
pub mod store;
pub mod tls;
