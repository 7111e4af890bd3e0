//! The end-to-end acceptance suite of image-patch-controller and its quick-start
//! demo, on the local test stack (`testsupport`).
//!
//! The webhook and the scanner run as child processes from their built binaries,
//! as close to their Deployment and CronJob as a machine without a kubelet
//! allows: each with its own ServiceAccount token, the webhook behind the real
//! kube-apiserver through `clientConfig.url`, the scanner with the CronJob's args
//! and env. Child processes also let a test stop the webhook.
//!
//! [`hub`] starts and drives the stack; [`scenarios`] holds the steps that the
//! acceptance tests and the demo share.
#![deny(missing_docs)]

pub mod hub;
pub mod process;
pub mod scenarios;
