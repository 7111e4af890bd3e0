//! Command-line options; every flag can also be set by an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::admission::Mode;

/// Mutating admission webhook that rewrites container images to approved patch tags.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Options {
    /// Address of the HTTPS server.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// PEM certificate chain of the HTTPS server; reloaded when it changes.
    #[arg(
        long,
        env = "WEBHOOK_TLS_CERT",
        default_value = "/etc/image-patch-webhook/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,

    /// PEM private key of the HTTPS server; reloaded when it changes.
    #[arg(
        long,
        env = "WEBHOOK_TLS_KEY",
        default_value = "/etc/image-patch-webhook/tls/tls.key"
    )]
    pub tls_key: PathBuf,

    /// How often the certificate and key files are checked for changes (`5s`, `500ms`).
    #[arg(long, env = "WEBHOOK_TLS_POLL_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub tls_poll_interval: Duration,

    /// Read approvals from this file instead of the ConfigMap, for local runs and benchmarks.
    #[arg(long, env = "WEBHOOK_APPROVALS_FILE")]
    pub approvals_file: Option<PathBuf>,

    /// How often the approvals file is checked for changes.
    #[arg(long, env = "WEBHOOK_APPROVALS_POLL_INTERVAL", default_value = "2s", value_parser = parse_interval)]
    pub approvals_poll_interval: Duration,

    /// Namespace of the approvals ConfigMap: the webhook's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "image-patch-system", value_parser = parse_namespace)]
    pub namespace: String,

    /// `audit` only warns what would be rewritten, in every namespace.
    #[arg(long, env = "WEBHOOK_MODE", value_enum, default_value_t = Mode::Enforce)]
    pub mode: Mode,

    /// Largest accepted AdmissionReview body, in bytes (65536 to 67108864).
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = parse_max_body_bytes)]
    pub max_body_bytes: usize,

    /// Time allowed to receive a request, from 1ms to 30s. Keep it below the
    /// `timeoutSeconds` of the MutatingWebhookConfiguration (5 s in the manifests).
    #[arg(long, env = "WEBHOOK_REQUEST_TIMEOUT", default_value = "3s", value_parser = parse_request_timeout)]
    pub request_timeout: Duration,

    /// Time between SIGTERM and closing the listener, while `/readyz` fails, so that the
    /// Service stops sending new connections first.
    #[arg(long, env = "WEBHOOK_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Time allowed for requests in flight to finish after the listener closed.
    #[arg(long, env = "WEBHOOK_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log format: `json` for the cluster, `plain` for a terminal.
    #[arg(long, env = "WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Human-readable lines.
    Plain,
}

/// Parses a duration written as a whole number with a unit: `ms`, `s` or `m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "" => Err(format!("{text:?} has no unit: write 500ms, 5s or 2m")),
        _ => Err(format!(
            "{text:?} has the unit {unit:?}, which is not supported: write ms, s or m, such as 500ms, 5s or 2m"
        )),
    }
}

/// Maximum length of a namespace name, a DNS-1123 label.
const MAX_NAMESPACE_LENGTH: usize = 63;

/// Parses a namespace name, so that a typo fails at start instead of leaving the webhook
/// watching a ConfigMap that can never exist.
pub fn parse_namespace(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_NAMESPACE_LENGTH
        && bytes.iter().all(|byte| alphanumeric(byte) || *byte == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric);
    if !valid {
        return Err(format!(
            "invalid namespace name {text:?}: expected 1 to {MAX_NAMESPACE_LENGTH} lowercase letters, digits or '-', starting and ending with a letter or digit, such as image-patch-system"
        ));
    }
    Ok(text.to_owned())
}

/// Parses a polling interval: a duration above zero, because a timer of zero panics.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval.is_zero() {
        return Err(format!("{text:?} is zero; write an interval such as 500ms or 5s"));
    }
    Ok(interval)
}

/// The API server waits at most 30 s for a webhook (`timeoutSeconds` is 1 to 30), so a
/// longer request timeout could never be used.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses the request timeout: above zero and at most 30 s.
pub fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() || timeout > MAX_REQUEST_TIMEOUT {
        return Err(format!(
            "{text:?} is outside 1ms to 30s; write a time below the webhook configuration's timeoutSeconds, such as 3s"
        ));
    }
    Ok(timeout)
}

/// The smallest body limit accepted. An AdmissionReview of a small Pod is a few KiB, so a
/// lower limit would reject most reviews with HTTP 413 and rewrite nothing.
const MIN_BODY_BYTES: usize = 64 * 1024;

/// The largest body limit accepted. Etcd's default request limit is 1.5 MiB, and a review
/// carries at most two objects. A higher limit only lets a caller make the webhook buffer
/// more memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Parses the body limit in bytes: from 64 KiB to 64 MiB.
pub fn parse_max_body_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of bytes, such as 4194304"))?;
    if bytes < MIN_BODY_BYTES {
        return Err(format!(
            "{bytes} bytes is below {MIN_BODY_BYTES}; most reviews would be rejected. Keep the default of 4194304 unless the cluster sends larger objects"
        ));
    }
    if bytes > MAX_BODY_BYTES {
        return Err(format!(
            "{bytes} bytes is above {MAX_BODY_BYTES}, more than any AdmissionReview needs. Keep the default of 4194304"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("500ms", Some(Duration::from_millis(500)))]
    #[case("5s", Some(Duration::from_secs(5)))]
    #[case("2m", Some(Duration::from_secs(120)))]
    #[case("0s", Some(Duration::ZERO))]
    #[case("5", None)]
    #[case("s", None)]
    #[case("1.5s", None)]
    #[case("5h", None)]
    #[case("1ns", None)]
    fn duration_parsing(#[case] text: &str, #[case] expected: Option<Duration>) {
        assert_eq!(parse_duration(text).ok(), expected);
    }

    #[rstest]
    #[case::zero_tls_poll(&["--tls-poll-interval", "0s"], "is zero")]
    #[case::zero_approvals_poll(&["--approvals-poll-interval", "0ms"], "is zero")]
    #[case::zero_request_timeout(&["--request-timeout", "0s"], "outside 1ms to 30s")]
    #[case::long_request_timeout(&["--request-timeout", "31s"], "outside 1ms to 30s")]
    #[case::zero_body(&["--max-body-bytes", "0"], "below 65536")]
    #[case::text_body(&["--max-body-bytes", "4MiB"], "not a whole number of bytes")]
    #[case::huge_body(&["--max-body-bytes", "99999999999999"], "above 67108864")]
    #[case::hour_unit(&["--request-timeout", "1h"], "unit \"h\", which is not supported")]
    #[case::no_unit(&["--tls-poll-interval", "5"], "has no unit")]
    #[case::bad_namespace(&["--namespace", "Bad_NS"], "invalid namespace name")]
    #[case::empty_namespace(&["--namespace", ""], "invalid namespace name")]
    fn unusable_values_rejected(#[case] arguments: &[&str], #[case] message: &str) {
        let command_line = std::iter::once("image-patch-webhook").chain(arguments.iter().copied());

        let error = Options::try_parse_from(command_line).unwrap_err().to_string();

        assert!(error.contains(message), "{error}");
        assert!(error.contains(arguments[0]), "{error}");
    }

    #[test]
    fn limits_at_their_bounds_accepted() {
        let options = Options::try_parse_from([
            "image-patch-webhook",
            "--request-timeout",
            "30s",
            "--max-body-bytes",
            "65536",
            "--approvals-poll-interval",
            "1ms",
        ])
        .unwrap();

        assert_eq!(options.request_timeout, Duration::from_secs(30));
        assert_eq!(options.max_body_bytes, 65536);
        assert_eq!(options.approvals_poll_interval, Duration::from_millis(1));
    }

    #[test]
    fn options_defaults_parse() {
        let options = Options::try_parse_from(["image-patch-webhook"]).unwrap();

        assert_eq!(options.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(options.mode, Mode::Enforce);
        assert_eq!(options.request_timeout, Duration::from_secs(3));
    }
}
