//! Polling for a condition that the cluster reaches on its own time, such as a watch that
//! picks up an edit or a controller that creates a ReplicaSet.

use std::future::Future;
use std::time::{Duration, Instant};

/// Time between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Calls `check` every 200 ms until it returns true, for up to `limit`, and returns how
/// long that took. An error from `check` ends the wait with that error.
pub async fn eventually<F, Fut>(description: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            anyhow::bail!("timed out after {limit:?} waiting for {description}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
