//! Retries with exponential backoff that honour a server's `Retry-After`, shared by the
//! registry client and the Slack sender.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The maximum backoff between two attempts when the server sends no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How often and how long to retry one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay after the first failed attempt; it doubles after each further one.
    pub backoff: Duration,
    /// Longest `Retry-After` worth waiting for; a longer one ends the retries at once.
    pub max_retry_after: Duration,
}

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// Success.
    Done(T),
    /// A transient failure: retry after the server's delay, or after the backoff when `None`.
    Retry {
        /// The failure, returned when no attempt is left.
        error: E,
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
    /// A failure that another attempt cannot fix.
    Fail(E),
}

impl RetryPolicy {
    /// Returns the backoff after the `failed`-th failed attempt (1 for the first).
    pub fn backoff_after(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out.
    /// `attempt` receives the attempt number, from 1.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
        E: std::fmt::Display,
    {
        let mut number = 1;
        loop {
            let (error, after) = match attempt(number).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, after } => (error, after),
            };
            if number >= self.attempts {
                return Err(error);
            }
            if after.is_some_and(|after| after > self.max_retry_after) {
                tracing::warn!(%error, retry_after = ?after, max_retry_after = ?self.max_retry_after, "server requested a Retry-After longer than the maximum; the request is not retried");
                return Err(error);
            }
            let delay = after.unwrap_or_else(|| self.backoff_after(number));
            tracing::warn!(%error, attempt = number, delay_ms = delay.as_millis() as u64, "request failed; retrying after the delay");
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date. A date in the past is a zero delay.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let delay = date.with_timezone(&Utc) - now;
    Some(delay.to_std().unwrap_or(Duration::ZERO))
}

/// Reads the `Retry-After` header of a response.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, Utc::now())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use chrono::TimeZone;
    use rstest::rstest;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { attempts: 3, backoff: Duration::from_millis(100), max_retry_after: Duration::from_secs(30) }
    }

    #[rstest]
    #[case("0", Some(Duration::ZERO))]
    #[case("7", Some(Duration::from_secs(7)))]
    #[case(" 120 ", Some(Duration::from_secs(120)))]
    #[case("Wed, 21 Oct 2015 07:28:10 GMT", Some(Duration::from_secs(10)))]
    #[case("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO))]
    #[case("soon", None)]
    #[case("-1", None)]
    fn retry_after_values(#[case] value: &str, #[case] expected: Option<Duration>) {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();

        assert_eq!(parse_retry_after(value, now), expected);
    }

    #[test]
    fn backoff_doubles_up_to_cap() {
        let policy = policy();

        assert_eq!(policy.backoff_after(1), Duration::from_millis(100));
        assert_eq!(policy.backoff_after(2), Duration::from_millis(200));
        assert_eq!(policy.backoff_after(3), Duration::from_millis(400));
        assert_eq!(policy.backoff_after(40), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_retry_after_then_succeeds() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();

        let result: Result<u32, String> = policy()
            .run(|number| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if number == 1 {
                        Attempt::Retry { error: "429".to_string(), after: Some(Duration::from_secs(5)) }
                    } else {
                        Attempt::Done(number)
                    }
                }
            })
            .await;

        assert_eq!(result, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_after_attempts() {
        let calls = AtomicU32::new(0);

        let result: Result<(), String> = policy()
            .run(|number| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Attempt::Retry { error: format!("500 on attempt {number}"), after: None } }
            })
            .await;

        assert_eq!(result, Err("500 on attempt 3".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_too_long_retry_after() {
        let calls = AtomicU32::new(0);

        let result: Result<(), String> = policy()
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Attempt::Retry { error: "429".to_string(), after: Some(Duration::from_secs(3600)) } }
            })
            .await;

        assert_eq!(result, Err("429".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_permanent_failure() {
        let calls = AtomicU32::new(0);

        let result: Result<(), String> = policy()
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Attempt::Fail("404".to_string()) }
            })
            .await;

        assert_eq!(result, Err("404".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
