//! A fault-injecting HTTP proxy for OCI registries.
//!
//! ```text
//!  client ──HTTP──> FaultProxy (127.0.0.1:free) ──HTTP──> upstream registry
//!                     │ counts requests by kind (tags/list, manifests, blobs)
//!                     │ takes the next scheduled fault, if one matches:
//!                     │   429 + Retry-After, 5xx, stall, truncated body
//!                     └ pages /v2/<name>/tags/list when a page size is set
//! ```
//!
//! Faults are scheduled for the next `times` matching requests and used up in
//! the order they were added. Paging reads the full tag list from upstream
//! (distribution 2.8 ignores `n` and `last`), returns the tags after `last`, at
//! most `min(n, page size)` of them, and a `Link` header to the next page.

use crate::{Error, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The largest request or response body the proxy buffers.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The kind of registry endpoint a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// `/v2/`, the API version check.
    Base,
    /// `/v2/<name>/tags/list`.
    TagsList,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/...`, uploads included.
    Blob,
    /// Any other path.
    Other,
}

impl PathKind {
    /// Classifies a request path.
    pub fn of(path: &str) -> PathKind {
        if path == "/v2" || path == "/v2/" {
            PathKind::Base
        } else if path.ends_with("/tags/list") {
            PathKind::TagsList
        } else if path.contains("/manifests/") {
            PathKind::Manifest
        } else if path.contains("/blobs/") {
            PathKind::Blob
        } else {
            PathKind::Other
        }
    }
}

/// A fault that the proxy injects into one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Responds with `429 Too Many Requests` with this `Retry-After` value (seconds
    /// or an HTTP date) and does not forward the request.
    TooManyRequests {
        /// The `Retry-After` header value.
        retry_after: String,
    },
    /// Responds with this status (a 5xx) with a registry error body and does not
    /// forward the request.
    ServerError {
        /// The HTTP status code.
        status: u16,
    },
    /// Waits this long before forwarding, longer than a client's timeout.
    Stall {
        /// The delay.
        duration: Duration,
    },
    /// Forwards the request, then sends the status, the headers with the full
    /// `Content-Length` and half the body, and closes the connection.
    TruncatedBody,
}

impl Fault {
    /// Returns a `429` whose `Retry-After` is `seconds`.
    pub fn too_many_requests(seconds: u64) -> Fault {
        Fault::TooManyRequests {
            retry_after: seconds.to_string(),
        }
    }
}

/// How the `Link` header of a tag-list page spells the next page's URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkStyle {
    /// `</v2/...?n=2&last=b>; rel="next"`, as the distribution spec writes it.
    #[default]
    AngleBrackets,
    /// `/v2/...?n=2&last=b; rel="next"`, as some registries send it.
    Bare,
}

#[derive(Debug)]
struct ScheduledFault {
    fault: Fault,
    kind: Option<PathKind>,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Settings {
    page_size: Option<usize>,
    link_style: LinkStyle,
    faults: VecDeque<ScheduledFault>,
    requests: HashMap<PathKind, usize>,
}

struct Shared {
    upstream: String,
    public_url: String,
    http: reqwest::Client,
    settings: Mutex<Settings>,
    shutdown: watch::Receiver<()>,
}

impl Shared {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fault-injecting proxy in front of one registry, stopped on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    address: String,
    _shutdown: watch::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`, a
    /// `host:port` or an `http://host:port` URL.
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        let upstream = if upstream.starts_with("http://") || upstream.starts_with("https://") {
            upstream.trim_end_matches('/').to_owned()
        } else {
            format!("http://{upstream}")
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| Error::io("cannot bind the fault proxy", error))?;
        let address = listener
            .local_addr()
            .map_err(|error| Error::io("cannot read the fault proxy's address", error))?
            .to_string();
        crate::install_crypto_provider();
        let (shutdown_sender, shutdown) = watch::channel(());
        let shared = Arc::new(Shared {
            upstream,
            public_url: format!("http://{address}"),
            http: reqwest::Client::builder().no_proxy().build()?,
            settings: Mutex::new(Settings::default()),
            shutdown: shutdown.clone(),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let mut stop = shutdown;
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "fault proxy stopped");
            }
        });
        tracing::info!(%address, upstream = %shared.upstream, "fault proxy started");
        Ok(FaultProxy {
            shared,
            address,
            _shutdown: shutdown_sender,
            server,
        })
    }

    /// Returns the proxy's `host:port`, to use as the registry in image references.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns the proxy's base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sets the page size of tag lists, or `None` to forward tag lists as the
    /// upstream returns them.
    pub fn set_page_size(&self, page_size: Option<usize>) {
        self.shared.settings().page_size = page_size.map(|size| size.max(1));
    }

    /// Sets how the `Link` header of a tag-list page is spelled.
    pub fn set_link_style(&self, style: LinkStyle) {
        self.shared.settings().link_style = style;
    }

    /// Injects `fault` into the next `times` requests of any kind.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.schedule(fault, None, times);
    }

    /// Injects `fault` into the next `times` requests of `kind`.
    pub fn inject_for(&self, kind: PathKind, fault: Fault, times: usize) {
        self.schedule(fault, Some(kind), times);
    }

    fn schedule(&self, fault: Fault, kind: Option<PathKind>, times: usize) {
        if times > 0 {
            self.shared.settings().faults.push_back(ScheduledFault {
                fault,
                kind,
                remaining: times,
            });
        }
    }

    /// Removes every scheduled fault that has not been used yet.
    pub fn clear_faults(&self) {
        self.shared.settings().faults.clear();
    }

    /// Returns the number of requests of `kind` received so far, faulted ones included.
    pub fn requests(&self, kind: PathKind) -> usize {
        self.shared
            .settings()
            .requests
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    /// Returns the number of requests of any kind received so far.
    pub fn total_requests(&self) -> usize {
        self.shared.settings().requests.values().sum()
    }

    /// Sets every request counter back to zero.
    pub fn reset_counters(&self) {
        self.shared.settings().requests.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the watch sender ends stalls and starts the graceful shutdown.
        self.server.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let kind = PathKind::of(&path);
    let fault = {
        let mut settings = shared.settings();
        *settings.requests.entry(kind).or_default() += 1;
        take_fault(&mut settings.faults, kind)
    };
    tracing::debug!(method = %request.method(), %path, ?kind, ?fault, "proxying");
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response = registry_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "rate limited by the test proxy",
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return registry_error(status, "UNKNOWN", "fault injected by the test proxy");
        }
        Some(Fault::Stall { duration }) => {
            let mut shutdown = shared.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = shutdown.changed() => return registry_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "proxy stopped"),
            }
        }
        Some(Fault::TruncatedBody) | None => {}
    }
    let response = match forward(&shared, kind, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, %path, "cannot reach the upstream registry");
            return registry_error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                "the test proxy cannot reach the upstream registry",
            );
        }
    };
    if fault == Some(Fault::TruncatedBody) {
        truncate(response).await
    } else {
        response
    }
}

fn take_fault(faults: &mut VecDeque<ScheduledFault>, kind: PathKind) -> Option<Fault> {
    let index = faults
        .iter()
        .position(|scheduled| scheduled.kind.is_none_or(|wanted| wanted == kind))?;
    let scheduled = &mut faults[index];
    scheduled.remaining -= 1;
    let fault = scheduled.fault.clone();
    if scheduled.remaining == 0 {
        faults.remove(index);
    }
    Some(fault)
}

async fn forward(
    shared: &Shared,
    kind: PathKind,
    request: Request,
) -> Result<Response, reqwest::Error> {
    let page_size = shared.settings().page_size;
    if kind == PathKind::TagsList
        && request.method() == http::Method::GET
        && let Some(page_size) = page_size
    {
        return page_tags(shared, request, page_size).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|value| value.as_str())
        .unwrap_or("/");
    let upstream = shared
        .http
        .request(
            parts.method.clone(),
            format!("{}{path_and_query}", shared.upstream),
        )
        .headers(forwarded_headers(&parts.headers))
        .body(body)
        .send()
        .await?;
    let status = upstream.status();
    let mut headers = forwarded_headers(upstream.headers());
    // Upload locations may be absolute URLs of the upstream, so point them at the proxy.
    if let Some(location) = headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        && let Some(rest) = location.strip_prefix(&shared.upstream)
        && let Ok(value) = HeaderValue::from_str(&format!("{}{rest}", shared.public_url))
    {
        headers.insert(header::LOCATION, value);
    }
    let bytes = upstream.bytes().await?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[derive(serde::Deserialize, serde::Serialize)]
struct TagList {
    name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Serves one page of a tag list read whole from the upstream.
async fn page_tags(
    shared: &Shared,
    request: Request,
    page_size: usize,
) -> Result<Response, reqwest::Error> {
    let path = request.uri().path().to_owned();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let upstream = shared
        .http
        .get(format!("{}{path}", shared.upstream))
        .headers(forwarded_headers(request.headers()))
        .send()
        .await?;
    let status = upstream.status();
    let headers = forwarded_headers(upstream.headers());
    let bytes = upstream.bytes().await?;
    let parsed = serde_json::from_slice::<TagList>(&bytes);
    let Some(list) = parsed.ok().filter(|_| status.is_success()) else {
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return Ok(response);
    };
    let requested = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0);
    let size = requested.map_or(page_size, |n| n.min(page_size));
    let mut tags = list.tags.unwrap_or_default();
    tags.sort();
    let after: Vec<String> = match query.get("last") {
        Some(last) => tags
            .into_iter()
            .filter(|tag| tag.as_str() > last.as_str())
            .collect(),
        None => tags,
    };
    let more = after.len() > size;
    let page: Vec<String> = after.into_iter().take(size).collect();
    let body = serde_json::to_vec(&TagList {
        name: list.name,
        tags: Some(page.clone()),
    })
    .expect("a tag list encodes");
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if more && let Some(last) = page.last() {
        let next = format!("{path}?n={size}&last={last}");
        let link = match shared.settings().link_style {
            LinkStyle::AngleBrackets => format!("<{next}>; rel=\"next\""),
            LinkStyle::Bare => format!("{next}; rel=\"next\""),
        };
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Copies end-to-end headers. Hop-by-hop headers and the length are the
/// business of each connection.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = headers.clone();
    for name in [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ] {
        forwarded.remove(name);
    }
    forwarded.remove("keep-alive");
    forwarded.remove("proxy-connection");
    forwarded
}

fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Sends half of the body under the full `Content-Length`, then fails the body
/// stream so that the server closes the connection.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let declared = bytes.len().max(16);
    let half = bytes.slice(..bytes.len() / 2);
    // The pause lets the server flush the head and the first half before the
    // failed stream makes it drop the connection.
    let chunks = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) }).chain(
        futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("body truncated by the test proxy"))
        }),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    Response::from_parts(parts, Body::from_stream(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_registry_paths() {
        assert_eq!(PathKind::of("/v2/"), PathKind::Base);
        assert_eq!(
            PathKind::of("/v2/mojaloop/quoting-service/tags/list"),
            PathKind::TagsList
        );
        assert_eq!(PathKind::of("/v2/a/b/manifests/v1.0.0"), PathKind::Manifest);
        assert_eq!(PathKind::of("/v2/a/blobs/uploads/123"), PathKind::Blob);
        assert_eq!(PathKind::of("/metrics"), PathKind::Other);
    }

    #[test]
    fn faults_apply_in_order_by_kind() {
        let mut faults = VecDeque::new();
        faults.push_back(ScheduledFault {
            fault: Fault::too_many_requests(1),
            kind: Some(PathKind::TagsList),
            remaining: 2,
        });
        faults.push_back(ScheduledFault {
            fault: Fault::ServerError { status: 503 },
            kind: None,
            remaining: 1,
        });
        assert_eq!(
            take_fault(&mut faults, PathKind::Manifest),
            Some(Fault::ServerError { status: 503 })
        );
        assert_eq!(take_fault(&mut faults, PathKind::Manifest), None);
        assert_eq!(
            take_fault(&mut faults, PathKind::TagsList),
            Some(Fault::too_many_requests(1))
        );
        assert_eq!(
            take_fault(&mut faults, PathKind::TagsList),
            Some(Fault::too_many_requests(1))
        );
        assert_eq!(take_fault(&mut faults, PathKind::TagsList), None);
    }
}
