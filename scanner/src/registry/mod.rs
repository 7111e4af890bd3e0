//! Registry lookups: the full tag list of a repository and the manifest digest of a tag.
//!
//! `oci-client` obtains the bearer token (the `WWW-Authenticate` challenge and the token
//! request), and the requests themselves go through `reqwest` because `oci-client`'s
//! `list_tags` reads a single page and drops the `Link` and `Retry-After` headers that
//! pagination and rate limits need. Each request holds a permit of its registry's
//! semaphore, has a timeout that covers the body, and is retried with backoff.
//!
//! ```text
//!  list_tags(repository, credentials)
//!     ├─ authorize: oci_client::Client::auth ──► Bearer token | Basic | anonymous
//!     └─ GET /v2/<name>/tags/list?n=N ──► Link: next ──► GET … ──► until no Link
//! ```

pub mod credentials;
pub mod link;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Repository;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Semaphore;

pub use credentials::Credential;

use crate::retry::{Attempt, RetryPolicy};
use crate::secret::Secret;

/// The maximum number of pages of one tag list. A registry that sends `Link` past it is faulty.
const MAX_PAGES: usize = 10_000;

/// Manifest media types accepted when resolving a digest: the digest of an index is the
/// one that a pod spec pins, so multi-platform indexes come first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Settings of the registry client.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain http.
    pub insecure: Vec<String>,
    /// Maximum requests in flight to one registry.
    pub concurrency: usize,
    /// Timeout of one request, body included.
    pub timeout: Duration,
    /// Retries of one request.
    pub retry: RetryPolicy,
    /// Tags requested per page.
    pub page_size: u32,
}

/// The reason a lookup gave no result. The repository's state is then unknown, never "no newer patch".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry returned `429` on every attempt, or asked to wait too long.
    #[error("{url}: rate limited (HTTP 429){}", retry_after_text(.retry_after))]
    RateLimited {
        /// The request.
        url: String,
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// No complete response within the timeout.
    #[error("{url}: timed out: no complete response within {timeout:?}")]
    Timeout {
        /// The request.
        url: String,
        /// The timeout of one request.
        timeout: Duration,
    },
    /// The registry rejected the credentials, or none were given where they are needed.
    #[error("{url}: access denied (HTTP {status}); check the imagePullSecrets of the workloads")]
    Denied {
        /// The request.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// Any other error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The connection failed.
    #[error("{url}: {message}")]
    Transport {
        /// The request.
        url: String,
        /// The transport error and its causes.
        message: String,
    },
    /// The registry's `/v2/` endpoint, which every lookup requests first, could not be
    /// reached: no connection, no TLS handshake, or no response within the timeout.
    #[error("cannot reach the registry {registry} over {scheme}: {message}{}", plain_http_hint(.registry, .scheme))]
    Unreachable {
        /// The registry host.
        registry: String,
        /// `https`, or `http` for a registry named with `--insecure-registry`.
        scheme: &'static str,
        /// The transport error and its causes.
        message: String,
    },
    /// The token request failed.
    #[error("authentication at {registry} failed: {message}")]
    Authentication {
        /// The registry host.
        registry: String,
        /// The reason, as the token server stated it.
        message: String,
    },
    /// The response cannot be read.
    #[error("{url}: invalid response: {message}")]
    InvalidResponse {
        /// The request.
        url: String,
        /// The problem found.
        message: String,
    },
    /// A later page of a tag list failed, so the list is incomplete.
    #[error("tag list incomplete after {pages} page(s): {cause}")]
    Partial {
        /// Pages read completely.
        pages: usize,
        /// The failure of the next page.
        cause: Box<RegistryError>,
    },
}

fn plain_http_hint(registry: &str, scheme: &str) -> String {
    if scheme == "https" {
        format!("; if the registry serves plain HTTP, pass --insecure-registry {registry}")
    } else {
        String::new()
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    retry_after.map(|after| format!(", Retry-After {}s", after.as_secs())).unwrap_or_default()
}

/// The authentication of a request.
#[derive(Debug, Clone)]
enum Authorization {
    Anonymous,
    Basic(Credential),
    Bearer(Secret),
}

/// A complete response: status, headers and the whole body.
struct FullResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A registry client for one scan.
pub struct RegistryClient {
    oci: oci_client::Client,
    http: reqwest::Client,
    config: RegistryConfig,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl RegistryClient {
    /// Builds a client. Fails only when the TLS backend cannot be set up.
    pub fn new(config: RegistryConfig) -> Result<Self, reqwest::Error> {
        crate::install_crypto_provider();
        let oci = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            read_timeout: Some(config.timeout),
            connect_timeout: Some(config.timeout),
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("image-patch-scanner/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { oci, http, config, limits: Mutex::new(HashMap::new()) })
    }

    /// Lists every tag of `repository`, following pagination to the end. `credentials` are
    /// tried in order and then anonymous access; the first that the registry accepts is used.
    pub async fn list_tags(&self, repository: &Repository, credentials: &[Credential]) -> Result<Vec<String>, RegistryError> {
        let reference = reference(repository, "latest");
        self.with_credentials(&reference, credentials, |authorization| self.list_tags_as(&reference, authorization)).await
    }

    /// Resolves the manifest digest (`sha256:…`) of `repository:tag`.
    pub async fn manifest_digest(&self, repository: &Repository, tag: &str, credentials: &[Credential]) -> Result<String, RegistryError> {
        let reference = reference(repository, tag);
        self.with_credentials(&reference, credentials, |authorization| self.manifest_digest_as(&reference, authorization)).await
    }

    async fn with_credentials<'a, T, F, Fut>(&'a self, reference: &'a Reference, credentials: &'a [Credential], mut call: F) -> Result<T, RegistryError>
    where
        F: FnMut(Authorization) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let candidates = credentials.iter().map(Some).chain(std::iter::once(None));
        let mut last_error = None;
        for credential in candidates {
            let authorization = self.authorize(reference, credential).await?;
            match call(authorization).await {
                Err(error @ RegistryError::Denied { .. }) => last_error = Some(error),
                other => return other,
            }
        }
        Err(last_error.expect("the candidates end with anonymous access"))
    }

    async fn authorize(&self, reference: &Reference, credential: Option<&Credential>) -> Result<Authorization, RegistryError> {
        let auth = match credential {
            Some(credential) => RegistryAuth::Basic(credential.username.clone(), credential.password.expose().to_string()),
            None => RegistryAuth::Anonymous,
        };
        let limit = self.limit(reference.resolve_registry());
        let _permit = limit.acquire().await.expect("registry semaphores are never closed");
        match self.oci.auth(reference, &auth, RegistryOperation::Pull).await {
            Ok(Some(token)) => Ok(Authorization::Bearer(Secret::new(token))),
            Ok(None) => Ok(credential.map_or(Authorization::Anonymous, |credential| Authorization::Basic(credential.clone()))),
            // oci-client first sends `GET /v2/`; a transport failure there is no authentication failure.
            Err(OciDistributionError::RequestError(error)) if error.is_connect() || error.is_timeout() || error.is_request() => {
                let registry = reference.resolve_registry();
                Err(RegistryError::Unreachable { registry: registry.to_string(), scheme: self.scheme(registry), message: shorten(&error_chain(&error)) })
            }
            Err(error) => Err(RegistryError::Authentication {
                registry: reference.resolve_registry().to_string(),
                message: shorten(&error.to_string()),
            }),
        }
    }

    async fn list_tags_as(&self, reference: &Reference, mut authorization: Authorization) -> Result<Vec<String>, RegistryError> {
        let mut url = Url::parse(&format!(
            "{}://{}/v2/{}/tags/list?n={}",
            self.scheme(reference.resolve_registry()),
            reference.resolve_registry(),
            reference.repository(),
            self.config.page_size
        ))
        .map_err(|error| RegistryError::InvalidResponse { url: reference.whole(), message: error.to_string() })?;
        let mut tags = Vec::new();
        let mut seen_tags = HashSet::new();
        let mut seen_urls = HashSet::new();
        let mut pages = 0;
        let mut renewed_token = false;
        let incomplete = |pages: usize, error: RegistryError| if pages == 0 { error } else { RegistryError::Partial { pages, cause: Box::new(error) } };

        loop {
            let response = self.send(reference.resolve_registry(), Method::GET, &url, &authorization, None).await.map_err(|error| incomplete(pages, error))?;
            if response.status == StatusCode::UNAUTHORIZED && pages > 0 && !renewed_token {
                // A bearer token can expire during a long listing: get a new one once.
                authorization = self.renew(reference, authorization).await?;
                renewed_token = true;
                continue;
            }
            check_status(&url, &response).map_err(|error| incomplete(pages, error))?;
            let page: TagList = serde_json::from_slice(&response.body)
                .map_err(|error| incomplete(pages, RegistryError::InvalidResponse { url: url.to_string(), message: error.to_string() }))?;
            pages += 1;
            for tag in page.tags.unwrap_or_default() {
                if seen_tags.insert(tag.clone()) {
                    tags.push(tag);
                }
            }

            let Some(next) = response.headers.get(LINK).and_then(|value| value.to_str().ok()).and_then(link::next_link) else {
                return Ok(tags);
            };
            let next = url
                .join(next)
                .map_err(|error| incomplete(pages, RegistryError::InvalidResponse { url: url.to_string(), message: format!("bad Link target {next:?}: {error}") }))?;
            if !seen_urls.insert(next.clone()) || pages >= MAX_PAGES {
                let message = format!("pagination does not end (next page {next})");
                return Err(incomplete(pages, RegistryError::InvalidResponse { url: url.to_string(), message }));
            }
            url = next;
        }
    }

    async fn manifest_digest_as(&self, reference: &Reference, authorization: Authorization) -> Result<String, RegistryError> {
        let tag = reference.tag().unwrap_or("latest");
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme(reference.resolve_registry()),
            reference.resolve_registry(),
            reference.repository(),
            tag
        );
        let url = Url::parse(&url).map_err(|error| RegistryError::InvalidResponse { url: url.clone(), message: error.to_string() })?;
        let response = self.send(reference.resolve_registry(), Method::HEAD, &url, &authorization, Some(MANIFEST_ACCEPT)).await?;
        check_status(&url, &response)?;
        let digest = response
            .headers
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .filter(|digest| digest.starts_with("sha256:") || digest.starts_with("sha512:"))
            .ok_or_else(|| RegistryError::InvalidResponse { url: url.to_string(), message: "no Docker-Content-Digest header".into() })?;
        Ok(digest.to_string())
    }

    async fn renew(&self, reference: &Reference, authorization: Authorization) -> Result<Authorization, RegistryError> {
        match authorization {
            Authorization::Bearer(_) => self.authorize(reference, None).await,
            other => Ok(other),
        }
    }

    /// Sends one request with retries. Statuses other than 429 and 5xx are returned for the caller to judge.
    async fn send(&self, registry: &str, method: Method, url: &Url, authorization: &Authorization, accept: Option<&str>) -> Result<FullResponse, RegistryError> {
        let limit = self.limit(registry);
        self.config
            .retry
            .run(|_| {
                let limit = limit.clone();
                let method = method.clone();
                async move {
                    let _permit = limit.acquire().await.expect("registry semaphores are never closed");
                    let mut request = self.http.request(method, url.clone());
                    request = match authorization {
                        Authorization::Anonymous => request,
                        Authorization::Basic(credential) => request.basic_auth(&credential.username, Some(credential.password.expose())),
                        Authorization::Bearer(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
                    };
                    if let Some(accept) = accept {
                        request = request.header(ACCEPT, accept);
                    }
                    self.attempt(request, url).await
                }
            })
            .await
    }

    async fn attempt(&self, request: reqwest::RequestBuilder, url: &Url) -> Attempt<FullResponse, RegistryError> {
        let transient = |error: reqwest::Error| {
            let error = if error.is_timeout() {
                RegistryError::Timeout { url: url.to_string(), timeout: self.config.timeout }
            } else {
                RegistryError::Transport { url: url.to_string(), message: error_chain(&error) }
            };
            Attempt::Retry { error, after: None }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return transient(error),
        };
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = crate::retry::retry_after(&headers);
            return Attempt::Retry { error: RegistryError::RateLimited { url: url.to_string(), retry_after: after }, after };
        }
        if status.is_server_error() {
            let after = crate::retry::retry_after(&headers);
            return Attempt::Retry { error: RegistryError::Status { url: url.to_string(), status: status.as_u16() }, after };
        }
        match response.bytes().await {
            Ok(body) => Attempt::Done(FullResponse { status, headers, body: body.to_vec() }),
            Err(error) => transient(error),
        }
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.config.insecure.iter().any(|insecure| insecure == registry) { "http" } else { "https" }
    }

    fn limit(&self, registry: &str) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().expect("registry limit map is never poisoned");
        limits.entry(registry.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.config.concurrency))).clone()
    }
}

fn reference(repository: &Repository, tag: &str) -> Reference {
    Reference::with_tag(repository.registry.clone(), repository.path.clone(), tag.to_string())
}

fn check_status(url: &Url, response: &FullResponse) -> Result<(), RegistryError> {
    match response.status {
        status if status.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::Denied { url: url.to_string(), status: response.status.as_u16() }),
        status => Err(RegistryError::Status { url: url.to_string(), status: status.as_u16() }),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn shorten(message: &str) -> String {
    const LIMIT: usize = 300;
    match message.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::routing::get;

    use super::*;

    /// Status, body and `Link` header of one tag-list page.
    type Page = (u16, &'static str, Option<&'static str>);

    /// Starts a fake registry whose tag list returns `pages[i]` for `?page=i`, and whose
    /// manifest endpoint names a digest. Returns its address and the tag-list request counter.
    async fn fake_registry(pages: Vec<Page>) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let state = (Arc::new(pages), calls.clone());
        let app = Router::new()
            .route("/v2/", get(|| async { "{}" }))
            .route(
                "/v2/mojaloop/als/tags/list",
                get(|State((pages, calls)): State<(Arc<Vec<Page>>, Arc<AtomicUsize>)>, RawQuery(query): RawQuery| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let page: usize = query.unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("page=")?.parse().ok()).unwrap_or(0);
                    let (status, body, link) = pages[page.min(pages.len() - 1)];
                    let mut headers = AxumHeaders::new();
                    if let Some(link) = link {
                        headers.insert("link", link.parse().unwrap());
                    }
                    (AxumStatus::from_u16(status).unwrap(), headers, body)
                }),
            )
            .route(
                "/v2/mojaloop/als/manifests/v1.0.0.1-patch",
                get(|| async { ([("docker-content-digest", "sha256:0123")], "{}") }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (address, calls)
    }

    fn client(address: &str) -> RegistryClient {
        RegistryClient::new(RegistryConfig {
            insecure: vec![address.to_string()],
            concurrency: 2,
            timeout: Duration::from_secs(5),
            retry: RetryPolicy { attempts: 2, backoff: Duration::from_millis(10), max_retry_after: Duration::from_secs(1) },
            page_size: 2,
        })
        .unwrap()
    }

    fn repository(address: &str) -> Repository {
        Repository::new(address, "mojaloop/als")
    }

    #[tokio::test]
    async fn list_tags_follows_relative_links() {
        let (address, calls) = fake_registry(vec![
            (200, r#"{"tags": ["v1.0.0", "v1.0.0.2-patch"]}"#, Some(r#"</v2/mojaloop/als/tags/list?page=1>; rel="next""#)),
            (200, r#"{"tags": ["v1.0.0.1-patch"]}"#, Some("?page=2; rel=next")),
            (200, r#"{"tags": null}"#, None),
        ])
        .await;

        let tags = client(&address).list_tags(&repository(&address), &[]).await.unwrap();

        assert_eq!(tags, ["v1.0.0", "v1.0.0.2-patch", "v1.0.0.1-patch"]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn list_tags_later_page_failure_is_partial() {
        let (address, calls) = fake_registry(vec![
            (200, r#"{"tags": ["v1.0.0"]}"#, Some(r#"</v2/mojaloop/als/tags/list?page=1>; rel="next""#)),
            (503, "unavailable", None),
        ])
        .await;

        let error = client(&address).list_tags(&repository(&address), &[]).await.unwrap_err();

        assert!(matches!(&error, RegistryError::Partial { pages: 1, cause } if matches!(**cause, RegistryError::Status { status: 503, .. })), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one page and two attempts at the second");
    }

    #[tokio::test]
    async fn list_tags_link_loop_is_error() {
        let (address, _) = fake_registry(vec![
            (200, r#"{"tags": ["v1.0.0"]}"#, Some(r#"</v2/mojaloop/als/tags/list?page=1>; rel="next""#)),
            (200, r#"{"tags": ["v1.0.0.1-patch"]}"#, Some(r#"</v2/mojaloop/als/tags/list?page=1>; rel="next""#)),
        ])
        .await;

        let error = client(&address).list_tags(&repository(&address), &[]).await.unwrap_err();

        assert!(error.to_string().contains("pagination does not end"), "{error}");
    }

    #[tokio::test]
    async fn list_tags_invalid_json_is_error() {
        let (address, _) = fake_registry(vec![(200, r#"{"tags": ["v1.0.0", "v1.0"#, None)]).await;

        let error = client(&address).list_tags(&repository(&address), &[]).await.unwrap_err();

        assert!(matches!(error, RegistryError::InvalidResponse { .. }), "{error}");
    }

    #[tokio::test]
    async fn manifest_digest_reads_header() {
        let (address, _) = fake_registry(vec![(200, "{}", None)]).await;

        let digest = client(&address).manifest_digest(&repository(&address), "v1.0.0.1-patch", &[]).await.unwrap();

        assert_eq!(digest, "sha256:0123");
    }

    #[tokio::test]
    async fn plain_http_registry_over_https_suggests_insecure() {
        let (address, calls) = fake_registry(vec![(200, r#"{"tags": ["v1.0.0"]}"#, None)]).await;
        let mut config = client(&address).config;
        config.insecure.clear();
        let secure = RegistryClient::new(config).unwrap();

        let error = secure.list_tags(&repository(&address), &[]).await.unwrap_err();

        let message = error.to_string();
        assert!(matches!(error, RegistryError::Unreachable { scheme: "https", .. }), "{error:?}");
        assert!(!message.contains("authentication"), "{message}");
        assert!(message.starts_with(&format!("cannot reach the registry {address} over https: ")), "{message}");
        assert!(message.ends_with(&format!("; if the registry serves plain HTTP, pass --insecure-registry {address}")), "{message}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn closed_insecure_registry_has_no_hint() {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();

        let error = client(&address).list_tags(&repository(&address), &[]).await.unwrap_err();

        let message = error.to_string();
        assert!(message.starts_with(&format!("cannot reach the registry {address} over http: ")), "{message}");
        assert!(!message.contains("--insecure-registry"), "{message}");
    }
}
