//! Free loopback ports.

use crate::{Error, Result};
use std::net::TcpListener;

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
