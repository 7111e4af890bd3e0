//! Sending messages to a Slack incoming webhook. A message counts as delivered only
//! when Slack returns `200` with the body `ok`. `429` (with `Retry-After`), `5xx` and
//! timeouts are retried, but other responses (`400 invalid_blocks`, `404 no_service`) are not.
//!
//! Of a response body, only a Slack error code is ever kept, because a receiver that is not
//! Slack may echo the request, and the request path is the webhook's secret token.
//! Redirects are not followed, so that a message never reaches another address.

use std::time::Duration;

use reqwest::StatusCode;

use crate::notice::SlackMessage;
use crate::retry::{Attempt, RetryPolicy};
use crate::secret::Secret;

/// A failure to deliver a message. The webhook URL never appears in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack returned `429` on every attempt.
    #[error("Slack rate limited the message (HTTP 429)")]
    RateLimited,
    /// Slack returned another status, or `200` without `ok`.
    #[error("Slack rejected the message: HTTP {status}{}", code_text(.code))]
    Rejected {
        /// The status code.
        status: u16,
        /// Slack's error code, such as `invalid_blocks`, when the body is one, as [`error_code`] checks.
        code: Option<String>,
    },
    /// No response within the timeout.
    #[error("Slack timed out: no response within {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("cannot reach Slack: {0}")]
    Transport(String),
}

/// Checks that `url` is usable as an incoming-webhook URL: an absolute `https://` URL, or an
/// `http://` URL of a loopback host (a local receiver). The error describes the problem
/// without the URL, because the URL contains the webhook's secret token.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("is not a valid URL ({error})"))?;
    let Some(host) = parsed.host_str().filter(|host| !host.is_empty()) else {
        return Err("has no host".to_string());
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err("uses http:// with a host that is not a loopback address".to_string()),
        _ => Err("does not use the https:// scheme".to_string()),
    }
}

/// Checks whether `host` is `localhost` or a loopback address. IPv6 hosts come in brackets,
/// as [`reqwest::Url::host_str`] returns them.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let address = host.trim_start_matches('[').trim_end_matches(']');
    address.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
}

/// A Slack incoming-webhook client.
pub struct SlackClient {
    http: reqwest::Client,
    url: Secret,
    timeout: Duration,
    retry: RetryPolicy,
}

impl SlackClient {
    /// Builds a client for the webhook `url`.
    pub fn new(url: Secret, timeout: Duration, retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, url, timeout, retry })
    }

    /// Sends one message, with retries.
    pub async fn send(&self, message: &SlackMessage) -> Result<(), SlackError> {
        self.retry.run(|_| self.attempt(message)).await
    }

    async fn attempt(&self, message: &SlackMessage) -> Attempt<(), SlackError> {
        let response = match self.http.post(self.url.expose()).json(&message.payload).send().await {
            Ok(response) => response,
            Err(error) => return Attempt::Retry { error: self.transport_error(error), after: None },
        };
        let status = response.status();
        let after = crate::retry::retry_after(response.headers());
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => return Attempt::Retry { error: self.transport_error(error), after: None },
        };
        match status {
            StatusCode::OK if body.trim() == "ok" => Attempt::Done(()),
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry { error: SlackError::RateLimited, after },
            status if status.is_server_error() => Attempt::Retry { error: rejected(status, &body), after },
            status => Attempt::Fail(rejected(status, &body)),
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> SlackError {
        if error.is_timeout() {
            return SlackError::Timeout(self.timeout);
        }
        // reqwest's message names the URL, which is the secret: keep only the kind and causes.
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        SlackError::Transport(message)
    }
}

fn rejected(status: StatusCode, body: &str) -> SlackError {
    SlackError::Rejected { status: status.as_u16(), code: error_code(body) }
}

/// Returns `body` as a Slack error code: 1 to 64 lowercase ASCII letters and underscores,
/// such as `invalid_token` or `no_service`. Any other body is dropped, because it may
/// contain the request and with it the webhook token.
pub fn error_code(body: &str) -> Option<String> {
    let code = body.trim();
    let valid = (1..=64).contains(&code.len()) && code.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_');
    valid.then(|| code.to_string())
}

fn code_text(code: &Option<String>) -> String {
    code.as_ref().map(|code| format!(": {code}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::post;
    use serde_json::json;

    use super::*;

    /// Serves the `responses` in order, then `ok`. Returns the webhook URL and the call counter.
    async fn fake_slack(responses: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            "/services/T0/B0/secret",
            post(move || {
                let number = counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = responses.get(number).copied().unwrap_or((200, "ok"));
                async move { (AxumStatus::from_u16(status).unwrap(), [("retry-after", "0")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}/services/T0/B0/secret"), calls)
    }

    fn client(url: String) -> SlackClient {
        let retry = RetryPolicy { attempts: 3, backoff: Duration::from_millis(10), max_retry_after: Duration::from_secs(1) };
        SlackClient::new(Secret::new(url), Duration::from_secs(5), retry).unwrap()
    }

    fn message() -> SlackMessage {
        SlackMessage { payload: json!({"text": "hello", "blocks": []}), patches: BTreeSet::new(), approvals_errors: false, unconfirmed_approvals: false }
    }

    #[tokio::test]
    async fn slack_retries_500_and_429() {
        let (url, calls) = fake_slack(vec![(500, "oops"), (429, "rate_limited")]).await;

        let result = client(url).send(&message()).await;

        assert_eq!(result, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn slack_gives_up_after_attempts() {
        let (url, calls) = fake_slack(vec![(500, "a"), (500, "b"), (503, "c"), (200, "ok")]).await;

        let result = client(url).send(&message()).await;

        assert_eq!(result, Err(SlackError::Rejected { status: 503, code: Some("c".into()) }));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn slack_bad_request_not_retried() {
        let (url, calls) = fake_slack(vec![(400, "invalid_blocks")]).await;

        let result = client(url).send(&message()).await;

        assert_eq!(result, Err(SlackError::Rejected { status: 400, code: Some("invalid_blocks".into()) }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn slack_200_without_ok_is_failure() {
        let (url, _) = fake_slack(vec![(200, "no"), (200, "no"), (200, "no")]).await;

        let result = client(url).send(&message()).await;

        assert!(matches!(result, Err(SlackError::Rejected { status: 200, .. })));
    }

    #[tokio::test]
    async fn slack_error_hides_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/services/T0/B0/secret-token", listener.local_addr().unwrap());
        drop(listener);

        let error = client(url).send(&message()).await.unwrap_err();

        assert!(!error.to_string().contains("secret-token"), "{error}");
        assert!(!format!("{error:?}").contains("secret-token"), "{error:?}");
    }

    #[test]
    fn webhook_url_accepted() {
        let accepted = [
            "https://hooks.slack.com/services/T0/B0/token",
            "http://127.0.0.1:8080/services/T0/B0/token",
            "http://localhost/services/T0/B0/token",
            "http://[::1]:9000/services/T0/B0/token",
        ];

        for url in accepted {
            assert_eq!(check_webhook_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn webhook_url_rejected_without_url() {
        let rejected = [
            ("not a url secret-token", "is not a valid URL"),
            ("ftp://hooks.example/secret-token", "does not use the https:// scheme"),
            ("http://hooks.example/secret-token", "not a loopback address"),
            ("http://10.0.0.1/secret-token", "not a loopback address"),
            ("file:///secret-token", "has no host"),
            ("/services/secret-token", "is not a valid URL"),
        ];

        for (url, expected) in rejected {
            let error = check_webhook_url(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("secret-token"), "{url}: {error}");
        }
    }

    #[test]
    fn error_code_keeps_only_codes() {
        let long = "a".repeat(65);
        let cases = [
            ("invalid_token", Some("invalid_token")),
            ("no_service\n", Some("no_service")),
            ("", None),
            ("Invalid_Token", None),
            ("POST /services/T0/B0/secret-token", None),
            ("<html>not found</html>", None),
            (long.as_str(), None),
        ];

        for (body, expected) in cases {
            assert_eq!(error_code(body).as_deref(), expected, "{body:?}");
        }
    }

    #[tokio::test]
    async fn slack_echoed_body_dropped() {
        let (url, _) = fake_slack(vec![(404, "no such path: /services/T0/B0/secret")]).await;

        let error = client(url).send(&message()).await.unwrap_err();

        assert_eq!(error, SlackError::Rejected { status: 404, code: None });
        assert_eq!(error.to_string(), "Slack rejected the message: HTTP 404");
    }

    #[tokio::test]
    async fn slack_redirect_not_followed() {
        let target_calls = Arc::new(AtomicUsize::new(0));
        let counter = target_calls.clone();
        let target = Router::new().route(
            "/elsewhere",
            post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
        let target_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let location = format!("http://{}/elsewhere", target_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(target_listener, target).await.unwrap() });
        let redirecting = Router::new().route(
            "/services/T0/B0/secret",
            post(move || {
                let location = location.clone();
                async move { (AxumStatus::TEMPORARY_REDIRECT, [("location", location)], "") }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/services/T0/B0/secret", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirecting).await.unwrap() });

        let result = client(url).send(&message()).await;

        assert_eq!(result, Err(SlackError::Rejected { status: 307, code: None }));
        assert_eq!(target_calls.load(Ordering::SeqCst), 0);
    }
}
