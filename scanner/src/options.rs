//! Command-line options. Every flag also reads an environment variable, so the
//! CronJob can set them from a ConfigMap or its pod spec.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use common::{ImageRef, ReferenceError};

/// The default label selector of opted-in namespaces.
pub const DEFAULT_NAMESPACE_SELECTOR: &str = "patches.mojaloop.io/enabled=true";

/// Options of one scan.
#[derive(Debug, Clone, Parser)]
#[command(name = "image-patch-scanner", version, args_override_self = true, about = "Finds newer image patches, notifies Slack and rolls out approved patches",
    after_help = "Exit status: 0 when the scan finished, registry and Slack faults included; 1 when the API server cannot be reached; \
2 for a configuration error, an invalid flag or environment variable included. When the approvals document cannot be parsed, the scan still runs with the last good approvals, \
approves nothing automatically, and exits with 2 after it printed and stored its report."
)]
pub struct Options {
    /// Namespaces to scan, instead of those matching --namespace-selector (repeatable or comma-separated).
    /// A named namespace that does not exist is logged and listed in the report.
    #[arg(long = "namespace", env = "SCANNER_NAMESPACES", value_delimiter = ',', value_parser = parse_namespace)]
    pub namespaces: Vec<String>,

    /// Label selector of the namespaces to scan when no --namespace is given, such as `tier in (hub,edge),!skip`.
    #[arg(long, env = "SCANNER_NAMESPACE_SELECTOR", default_value = DEFAULT_NAMESPACE_SELECTOR, value_parser = parse_selector)]
    pub namespace_selector: String,

    /// Namespace of the controller: the approvals, state and report ConfigMaps and the Slack Secret live here.
    /// Rollout never changes workloads in it.
    #[arg(long, env = "SCANNER_CONTROLLER_NAMESPACE", default_value = "image-patch-system", value_parser = parse_namespace)]
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
    /// An `http://` prefix and a trailing `/` are dropped; another scheme or a path is rejected.
    #[arg(long = "insecure-registry", env = "SCANNER_INSECURE_REGISTRIES", value_delimiter = ',', value_parser = parse_registry_host)]
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

/// The maximum length of a namespace name, a DNS-1123 label.
const MAX_NAMESPACE: usize = 63;

fn parse_namespace(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= MAX_NAMESPACE
        && value.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        return Err(format!(
            "invalid namespace name {value:?}: expected 1 to {MAX_NAMESPACE} lowercase letters, digits or '-', starting and ending with a letter or digit"
        ));
    }
    Ok(value.to_string())
}

fn parse_selector(value: &str) -> Result<String, String> {
    // An empty selector matches every namespace, so rollout could patch workloads in
    // namespaces that never opted in and that the webhook leaves alone.
    if value.trim().is_empty() {
        return Err(format!(
            "the namespace selector is empty, which would select every namespace; use {DEFAULT_NAMESPACE_SELECTOR}, or --namespace NAME for one namespace"
        ));
    }
    crate::label_selector::check(value)
        .map_err(|problem| format!("invalid label selector {value:?}: {problem}; expected a selector such as {DEFAULT_NAMESPACE_SELECTOR}"))?;
    Ok(value.to_string())
}

/// Parses a registry `HOST[:PORT]`. The registry client compares it with the registry
/// part of image references, so a scheme or path would make it match nothing.
fn parse_registry_host(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let host = match trimmed.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &trimmed[7..],
        _ => trimmed,
    };
    if let Some((scheme, _)) = host.split_once("://") {
        return Err(format!(
            "{value:?} has the scheme {scheme}://; give the registry as HOST[:PORT], such as 127.0.0.1:5000, because this flag always means plain http"
        ));
    }
    let host = host.strip_suffix('/').unwrap_or(host);
    if host.is_empty() {
        return Err("empty registry; give the registry as HOST[:PORT], such as 127.0.0.1:5000".to_string());
    }
    if let Some(position) = host.find(|character: char| character == '/' || character == '@' || character.is_whitespace()) {
        let found = &host[position..];
        return Err(format!(
            "{value:?} is not a registry HOST[:PORT] (unexpected {found:?}); give the host and port only, such as 127.0.0.1:5000, as it appears in image references"
        ));
    }

    // The value must be a registry as image references name one, or it never matches. A
    // probe reference checks the host and port with the same grammar the scan uses.
    let probe = format!("{host}/probe:v1");
    let reference = ImageRef::parse(&probe).map_err(|error| {
        let reason = match error {
            ReferenceError::InvalidRegistry { reason, .. } => reason.to_string(),
            other => other.to_string(),
        };
        format!("{value:?} is not a registry HOST[:PORT]: it {reason}. Write it as in image references, such as 127.0.0.1:5000")
    })?;
    if reference.repository.path != "probe" {
        return Err(format!(
            "{value:?} is not a registry host: image references read it as part of a Docker Hub repository. A registry host contains a '.' or a ':PORT', or is localhost, such as 127.0.0.1:5000"
        ));
    }
    Ok(reference.repository.registry)
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

    #[test]
    fn insecure_registry_drops_http_scheme() {
        let options = Options::try_parse_from(["s", "--insecure-registry=http://127.0.0.1:5000,HTTP://registry.local/, hub.local:80 "]).unwrap();

        assert_eq!(options.insecure_registries, ["127.0.0.1:5000", "registry.local", "hub.local:80"]);
    }

    #[rstest::rstest]
    #[case::https_scheme("https://127.0.0.1:5000", "scheme https://")]
    #[case::other_scheme("oci://127.0.0.1:5000", "scheme oci://")]
    #[case::path("127.0.0.1:5000/mojaloop", "unexpected \"/mojaloop\"")]
    #[case::path_after_scheme("http://127.0.0.1:5000/v2/", "unexpected \"/v2\"")]
    #[case::user_info("user@127.0.0.1:5000", "unexpected \"@")]
    #[case::empty("http://", "empty registry")]
    #[case::query("127.0.0.1:25125?x", "invalid port")]
    #[case::fragment("127.0.0.1:25125#", "invalid port")]
    #[case::bad_host("regis?try.local", "not a valid host name")]
    #[case::empty_port("127.0.0.1:", "invalid port")]
    #[case::port_out_of_range("127.0.0.1:99999", "invalid port")]
    #[case::docker_hub_path("myregistry", "part of a Docker Hub repository")]
    fn insecure_registry_rejects(#[case] value: &str, #[case] expected: &str) {
        let error = Options::try_parse_from(["s", &format!("--insecure-registry={value}")]).unwrap_err().to_string();

        assert!(error.contains("--insecure-registry"), "{error}");
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("127.0.0.1:5000"), "the error shows the expected form: {error}");
    }

    #[test]
    fn empty_namespace_selector_rejected() {
        let error = Options::try_parse_from(["s", "--namespace-selector", " "]).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("select every namespace"), "{message}");
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn namespace_selector_syntax_checked() {
        let error = Options::try_parse_from(["s", "--namespace-selector", "==="]).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("--namespace-selector"), "{message}");
        assert!(message.contains("no label key"), "{message}");
        assert!(message.contains(DEFAULT_NAMESPACE_SELECTOR), "{message}");
        assert_eq!(error.exit_code(), 2, "clap exits with the status of a configuration error");
        assert!(Options::try_parse_from(["s", "--namespace-selector=tier in (hub,edge),!skip"]).is_ok());
    }

    #[rstest::rstest]
    #[case::underscore_and_uppercase("Bad_NS")]
    #[case::leading_dash("-ns")]
    #[case::too_long("a123456789012345678901234567890123456789012345678901234567890123")]
    #[case::empty_in_list("a,,b")]
    fn namespace_name_checked(#[case] value: &str) {
        let error = Options::try_parse_from(["s", &format!("--namespace={value}")]).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("--namespace"), "{message}");
        assert!(message.contains("invalid namespace name"), "{message}");
        assert_eq!(error.exit_code(), 2);
    }
}
