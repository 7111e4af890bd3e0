//! Prometheus metrics in a registry owned by the app, served on `/metrics`.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Outcome of an admission review. Its label value is the variant's name in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed with a JSONPatch that rewrites at least one image.
    Patched,
    /// Audit mode: allowed unchanged, with a warning per rewrite it would make.
    Audited,
    /// Allowed unchanged because nothing needed a rewrite.
    Unchanged,
    /// Allowed unchanged because the object's kind is not handled.
    UnknownKind,
    /// Allowed unchanged after an internal fault.
    Error,
    /// Rejected with HTTP 400 or 413: not a usable AdmissionReview.
    Invalid,
}

impl Outcome {
    /// Returns the label value: `patched`, `audited`, `unchanged`, `unknown_kind`, `error`
    /// or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Audited => "audited",
            Self::Unchanged => "unchanged",
            Self::UnknownKind => "unknown_kind",
            Self::Error => "error",
            Self::Invalid => "invalid",
        }
    }
}

// Label values are written in snake case, as Prometheus conventions expect and as the
// other labels (`mode`, `outcome` of certificate reloads) already are.
impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Returns the `kind` label for an object kind: the kind itself when the webhook handles
/// it, `other` for any other, and empty when the request could not be read. The kind comes
/// from the request, so a caller sending made-up kinds could otherwise add a series each.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Pod" => "Pod",
        "Deployment" => "Deployment",
        "StatefulSet" => "StatefulSet",
        "DaemonSet" => "DaemonSet",
        "ReplicaSet" => "ReplicaSet",
        "Job" => "Job",
        "CronJob" => "CronJob",
        "" => "",
        _ => "other",
    }
}

/// Labels of the request counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The object's kind (`Pod`, `Deployment`, …), empty when the request could not be read.
    pub kind: String,
    /// Outcome of the review.
    pub outcome: Outcome,
    /// Whether the API request was a dry run.
    pub dry_run: bool,
}

/// Labels of the rewrite counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RewriteLabels {
    /// The object's kind.
    pub kind: String,
    /// `enforce` for applied rewrites, `audit` for reported ones.
    pub mode: String,
}

/// Part of the approvals document that was invalid. Its label value is `document` or `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The whole document was unusable; the last good approvals stay in force.
    Document,
    /// One entry was invalid and skipped.
    Entry,
}

impl EncodeLabelValue for ConfigErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let value = match self {
            Self::Document => "document",
            Self::Entry => "entry",
        };
        encoder.write_str(value)
    }
}

/// Labels of the config error counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConfigErrorLabels {
    /// Document or entry.
    pub kind: ConfigErrorKind,
}

/// Labels of the certificate reload counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub outcome: String,
}

/// Every metric of the webhook.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Admission requests by kind, outcome and dry run.
    pub requests: Family<RequestLabels, Counter>,
    /// Image rewrites, applied or reported in audit mode.
    pub rewrites: Family<RewriteLabels, Counter>,
    /// Time spent on one admission request, body read included.
    pub duration: Histogram,
    /// Number of valid approvals in force.
    pub approvals_loaded: Gauge,
    /// Approvals documents or entries that were rejected.
    pub config_errors: Family<ConfigErrorLabels, Counter>,
    /// TLS certificate reloads by outcome.
    pub certificate_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the prefix `image_patch_webhook`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("image_patch_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let rewrites = Family::<RewriteLabels, Counter>::default();
        // 0.25 ms to about 4 s: admission is handled from memory in well under a millisecond,
        // and the API server gives up at the 5 s webhook timeout.
        let duration = Histogram::new(exponential_buckets(0.000_25, 2.5, 11));
        let approvals_loaded = Gauge::default();
        let config_errors = Family::<ConfigErrorLabels, Counter>::default();
        let certificate_reloads = Family::<ReloadLabels, Counter>::default();

        registry.register(
            "admission_requests",
            "Admission requests by object kind, outcome and dry run",
            requests.clone(),
        );
        registry.register(
            "image_rewrites",
            "Image rewrites applied (enforce) or reported (audit)",
            rewrites.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission request",
            duration.clone(),
        );
        registry.register(
            "approvals_loaded",
            "Valid approvals in force",
            approvals_loaded.clone(),
        );
        registry.register(
            "approvals_config_errors",
            "Rejected approvals documents (kind=document) and skipped entries (kind=entry)",
            config_errors.clone(),
        );
        registry.register(
            "certificate_reloads",
            "TLS certificate reloads from disk by outcome",
            certificate_reloads.clone(),
        );

        Self {
            registry,
            requests,
            rewrites,
            duration,
            approvals_loaded,
            config_errors,
            certificate_reloads,
        }
    }

    /// Encodes every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // `fmt::Write` for String never returns an error.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one admission request.
    pub fn count_request(&self, kind: &str, outcome: Outcome, dry_run: bool) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind_label(kind).to_owned(),
                outcome,
                dry_run,
            })
            .inc();
    }

    /// Counts `count` rewrites of one request.
    pub fn count_rewrites(&self, kind: &str, audit: bool, count: usize) {
        let mode = if audit { "audit" } else { "enforce" };
        self.rewrites
            .get_or_create(&RewriteLabels {
                kind: kind_label(kind).to_owned(),
                mode: mode.to_owned(),
            })
            .inc_by(count as u64);
    }

    /// Counts `count` approvals config errors of one kind.
    pub fn count_config_errors(&self, kind: ConfigErrorKind, count: usize) {
        self.config_errors
            .get_or_create(&ConfigErrorLabels { kind })
            .inc_by(count as u64);
    }

    /// Counts one certificate reload.
    pub fn count_certificate_reload(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.certificate_reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
