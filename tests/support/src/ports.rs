//! Free loopback ports.

use crate::{Error, Result};
use std::future::Future;
use std::net::TcpListener;

/// How many times a component is started with new ports after a port conflict.
pub(crate) const START_ATTEMPTS: usize = 3;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before the caller binds it, so another process could
/// take it in between. That race is rare on a test machine, and a component
/// that loses it fails to start with a clear "address in use" in its log.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| Error::io("cannot bind a free port on 127.0.0.1", error))?;
    let port = listener
        .local_addr()
        .map_err(|error| Error::io("cannot read a bound port", error))?
        .port();
    Ok(port)
}

/// Runs `start` again with new ports when it fails because a component could
/// not bind a port that [`free_port`] returned, up to [`START_ATTEMPTS`] times.
pub(crate) async fn retry_on_port_conflict<T, F, Fut>(mut start: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Err(Error::Startup {
                component,
                log_tail,
                ..
            }) if attempt < START_ATTEMPTS && log_tail.contains("address already in use") => {
                tracing::warn!(%component, attempt, "a port was taken before the component bound it; retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}
