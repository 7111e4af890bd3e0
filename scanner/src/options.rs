//! Command-line options. Every flag also reads an environment variable, so the
//! CronJob can set them from a ConfigMap or its pod spec.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The default label selector of opted-in namespaces.
pub const DEFAULT_NAMESPACE_SELECTOR: &str = "patches.mojaloop.io/enabled=true";

/// Options of one scan.
#[derive(Debug, Clone, Parser)]
#[command(name = "image-patch-scanner", version, args_override_self = true, about = "Finds newer image patches, notifies Slack and rolls out approved patches",
    after_help = "Exit status: 0 when the scan finished, registry and Slack faults included; 1 when the API server cannot be reached; \
2 for a configuration error. When the approvals document cannot be parsed, the scan still runs with the last good approvals, \
approves nothing automatically, and exits with 2 after it printed and stored its report."
)]
pub struct Options {
    /// Namespaces to scan, instead of those matching --namespace-selector (repeatable or comma-separated).
    #[arg(long = "namespace", env = "SCANNER_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Label selector of the namespaces to scan when no --namespace is given.
    #[arg(long, env = "SCANNER_NAMESPACE_SELECTOR", default_value = DEFAULT_NAMESPACE_SELECTOR)]
    pub namespace_selector: String,

    /// Namespace of the controller: the approvals, state and report ConfigMaps and the Slack Secret live here.
    /// Rollout never changes workloads in it.
    #[arg(long, env = "SCANNER_CONTROLLER_NAMESPACE", default_value = "image-patch-system")]
    pub controller_namespace: String,

    /// Cluster name shown in notices and the report.
    #[arg(long, env = "SCANNER_CLUSTER_NAME", default_value = "unnamed cluster")]
    pub cluster_name: String,

    /// Secret in the controller namespace that contains the Slack incoming-webhook URL.
    #[arg(long, env = "SCANNER_SLACK_SECRET", default_value = "image-patch-slack")]
    pub slack_secret: String,

    /// Key of the webhook URL in the Slack Secret.
    #[arg(long, env = "SCANNER_SLACK_SECRET_KEY", default_value = "webhook-url")]
    pub slack_secret_key: String,

    /// Print the Slack messages as JSON instead of sending them, and write nothing to the cluster.
    /// With --rollout, the report lists the changes that rollout would make.
    #[arg(long, env = "SCANNER_DRY_RUN")]
    pub dry_run: bool,

    /// Format of the report on stdout.
    #[arg(long, env = "SCANNER_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// The rollout mode for approved patches that a workload does not run yet.
    #[arg(long, env = "SCANNER_ROLLOUT", value_enum, default_value_t = RolloutMode::Off)]
    pub rollout: RolloutMode,

    /// Registry `HOST[:PORT]` reached over plain http instead of https (repeatable or comma-separated).
    #[arg(long = "insecure-registry", env = "SCANNER_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,

    /// Maximum number of requests in flight to one registry.
    #[arg(long, env = "SCANNER_REGISTRY_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub registry_concurrency: u32,

    /// Timeout of one registry request, body included, in seconds.
    #[arg(long, env = "SCANNER_REGISTRY_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub registry_timeout: Duration,

    /// Attempts of one registry request before the repository counts as unknown.
    #[arg(long, env = "SCANNER_REGISTRY_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub registry_attempts: u32,

    /// First retry delay in milliseconds; it doubles on each retry.
    #[arg(long, env = "SCANNER_REGISTRY_BACKOFF_MS", default_value_t = 500)]
    pub registry_backoff_ms: u64,

    /// Longest `Retry-After` that the scan waits for, in seconds; a longer one makes the repository unknown.
    #[arg(long, env = "SCANNER_MAX_RETRY_AFTER", default_value = "60", value_parser = parse_seconds)]
    pub max_retry_after: Duration,

    /// Tags requested per page of a tag list (`n`).
    #[arg(long, env = "SCANNER_TAGS_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub tags_page_size: u32,

    /// Timeout of one Slack request, in seconds.
    #[arg(long, env = "SCANNER_SLACK_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub slack_timeout: Duration,

    /// Attempts of one Slack message before it is left for the next scan.
    #[arg(long, env = "SCANNER_SLACK_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub slack_attempts: u32,

    /// Seconds after which another scan's unconfirmed claim on a patch is ignored (a scan that died while sending).
    #[arg(long, env = "SCANNER_CLAIM_TTL", default_value = "900", value_parser = parse_seconds)]
    pub claim_ttl: Duration,

    /// Log format.
    #[arg(long, env = "SCANNER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// Format of the report on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// The report document as JSON.
    Json,
}

/// The way approved patches reach running workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloutMode {
    /// Report only.
    Off,
    /// Patch the image fields of the workload to the approved patch.
    Patch,
    /// Restart the workload's pods through a pod-template annotation, so that the webhook rewrites the new pods.
    Restart,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Plain,
    /// One JSON object a line, for the cluster's log collector.
    Json,
}

impl Options {
    /// Returns the retry policy of registry requests.
    pub fn registry_retry(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy {
            attempts: self.registry_attempts,
            backoff: Duration::from_millis(self.registry_backoff_ms),
            max_retry_after: self.max_retry_after,
        }
    }

    /// Returns the retry policy of Slack requests.
    pub fn slack_retry(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy {
            attempts: self.slack_attempts,
            backoff: Duration::from_millis(self.registry_backoff_ms.max(1000)),
            max_retry_after: self.max_retry_after,
        }
    }
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {value:?}"))?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("expected a positive number of seconds, got {value:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_defaults() {
        let options = Options::try_parse_from(["image-patch-scanner"]).unwrap();

        assert!(options.namespaces.is_empty());
        assert_eq!(options.namespace_selector, DEFAULT_NAMESPACE_SELECTOR);
        assert_eq!(options.controller_namespace, "image-patch-system");
        assert_eq!(options.rollout, RolloutMode::Off);
        assert_eq!(options.output, OutputFormat::Table);
        assert!(!options.dry_run);
        assert_eq!(options.registry_timeout, Duration::from_secs(30));
    }

    #[test]
    fn options_repeatable_and_comma_lists() {
        let options = Options::try_parse_from([
            "image-patch-scanner",
            "--namespace=a,b",
            "--namespace",
            "c",
            "--insecure-registry=127.0.0.1:5000",
            "--rollout=restart",
            "--registry-timeout=0.5",
        ])
        .unwrap();

        assert_eq!(options.namespaces, ["a", "b", "c"]);
        assert_eq!(options.insecure_registries, ["127.0.0.1:5000"]);
        assert_eq!(options.rollout, RolloutMode::Restart);
        assert_eq!(options.registry_timeout, Duration::from_millis(500));
    }

    #[test]
    fn options_reject_bad_values() {
        assert!(Options::try_parse_from(["s", "--rollout=always"]).is_err());
        assert!(Options::try_parse_from(["s", "--registry-timeout=0"]).is_err());
        assert!(Options::try_parse_from(["s", "--registry-concurrency=0"]).is_err());
        assert!(Options::try_parse_from(["s", "--output=xml"]).is_err());
    }
}
