//! HTTP routes: `POST /mutate` and `POST /audit` for admission reviews, `GET /healthz`,
//! `GET /readyz` and `GET /metrics`. [`router`] builds them for the TLS server and for tests.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;

use crate::admission::{self, ImageRewrite, Mode, Review};
use crate::decisions::DecisionCache;
use crate::metrics::{Metrics, Outcome};
use crate::store::ApprovalsStore;

/// Bounds on one admission request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to receive the whole body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(3),
        }
    }
}

/// Everything the routes share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The approvals in force.
    pub store: Arc<ApprovalsStore>,
    /// Decisions already taken under the approvals in force.
    pub decisions: Arc<DecisionCache>,
    /// The app's metrics.
    pub metrics: Arc<Metrics>,
    /// Bounds on one admission request.
    pub limits: Limits,
    /// `Audit` turns every review into an audit, whatever the path.
    pub mode: Mode,
    /// Set on SIGTERM, so that `/readyz` fails while in-flight requests finish.
    pub shutting_down: Arc<AtomicBool>,
    /// Namespaces whose objects are never patched: `kube-system` and the webhook's own.
    pub protected_namespaces: Vec<String>,
}

impl AppState {
    /// Creates the state with a new store, default limits and enforce mode.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            store: Arc::new(ApprovalsStore::new(metrics.clone())),
            decisions: Arc::new(DecisionCache::new()),
            metrics,
            limits: Limits::default(),
            mode: Mode::Enforce,
            shutting_down: Arc::new(AtomicBool::new(false)),
            protected_namespaces: vec!["kube-system".to_string(), "image-patch-system".to_string()],
        }
    }
}

/// Builds the router of every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/audit", post(audit))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // The admission handlers enforce their own limit, with a clearer message.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, body: Body) -> Response {
    handle_review(state, Mode::Enforce, body).await
}

async fn audit(State(state): State<AppState>, body: Body) -> Response {
    handle_review(state, Mode::Audit, body).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if !state.store.is_loaded() {
        return (StatusCode::SERVICE_UNAVAILABLE, "approvals not loaded yet").into_response();
    }
    "ok".into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Reads one AdmissionReview and sends the response. A body that is no AdmissionReview gets
/// a 4xx with a plain-text reason. Every other response is an allowed AdmissionReview.
async fn handle_review(state: AppState, path_mode: Mode, body: Body) -> Response {
    let started = Instant::now();
    let mode = if state.mode == Mode::Audit {
        Mode::Audit
    } else {
        path_mode
    };

    let body = match tokio::time::timeout(
        state.limits.body_timeout,
        read_body(body, state.limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) => return reject(&state, started, rejection.0, rejection.1),
        Err(_) => {
            let reason = format!(
                "request body not received within {:?}",
                state.limits.body_timeout
            );
            return reject(&state, started, StatusCode::REQUEST_TIMEOUT, reason);
        }
    };
    let request = match admission::parse_review(&body) {
        Ok(request) => request,
        Err(error) => return reject(&state, started, StatusCode::BAD_REQUEST, error.to_string()),
    };

    // The request's identity goes into each log line as fields rather than a span: a span is
    // formatted for every request, and most requests log nothing.
    let namespace = request.namespace();
    let kind = request.kind_name();
    let review = if state
        .protected_namespaces
        .iter()
        .any(|protected| protected == namespace)
    {
        warn_unchanged(&request, "namespace is never patched");
        Review::protected_namespace(&request)
    } else if state.store.is_loaded() {
        let approvals = state.store.load();
        // Every profile unwinds on panic, so a bug in a review admits the object unchanged.
        catch_unwind(AssertUnwindSafe(|| {
            admission::review(&request, &approvals, &state.decisions, mode)
        }))
        // The error line below names the fault for this and every other internal error.
        .unwrap_or_else(|_| Review::internal_error(&request, "panic while reviewing"))
    } else {
        warn_unchanged(&request, "approvals not loaded yet");
        Review::not_loaded(&request)
    };

    if !review.rewrites.is_empty() {
        tracing::info!(
            uid = %request.uid,
            kind,
            namespace,
            name = %request.name,
            operation = ?request.operation,
            dry_run = request.is_dry_run(),
            count = review.rewrites.len(),
            rewrites = %RewriteList(&review.rewrites),
            audit = mode == Mode::Audit,
            "images rewritten"
        );
    }
    match review.outcome {
        Outcome::UnknownKind => warn_unchanged(&request, "kind not handled"),
        Outcome::Error => tracing::error!(
            uid = %request.uid,
            kind,
            namespace,
            name = %request.name,
            warnings = ?review.response.warnings,
            "admission review failed; object admitted unchanged"
        ),
        _ => {}
    }

    state
        .metrics
        .count_request(kind, review.outcome, request.is_dry_run());
    if !review.rewrites.is_empty() {
        state
            .metrics
            .count_rewrites(kind, mode == Mode::Audit, review.rewrites.len());
    }
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());

    match admission::response_body(review.response) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, uid = %request.uid, "cannot serialize the AdmissionReview response");
            let reason = format!("cannot serialize the AdmissionReview response: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, reason).into_response()
        }
    }
}

/// Logs that the object of `request` is admitted unchanged, and why.
fn warn_unchanged(request: &admission::ReviewRequest<'_>, reason: &'static str) {
    tracing::warn!(
        uid = %request.uid,
        kind = request.kind.as_ref().map(admission::display_kind).unwrap_or_default(),
        namespace = request.namespace(),
        name = %request.name,
        reason,
        "object admitted unchanged"
    );
}

/// Formats the rewrites of one review for the log, as
/// `app: a:v1.0.0 -> a:v1.0.0.1-patch (approvals[0]), sidecar: ...`.
struct RewriteList<'a>(&'a [ImageRewrite]);

impl fmt::Display for RewriteList<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, ImageRewrite { field, rewrite }) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str(", ")?;
            }
            write!(
                formatter,
                "{}: {} -> {} (approvals[{}])",
                field.container, rewrite.from, rewrite.to, rewrite.approval_index
            )?;
        }
        Ok(())
    }
}

/// Collects the body, failing as soon as it grows past `max_bytes`.
async fn read_body(body: Body, max_bytes: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {max_bytes} bytes"),
        )
    };

    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            (
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {error}"),
            )
        })?;
        if bytes.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn reject(state: &AppState, started: Instant, status: StatusCode, reason: String) -> Response {
    tracing::warn!(
        status = status.as_u16(),
        reason,
        "admission request rejected"
    );
    state.metrics.count_request("", Outcome::Invalid, false);
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    (status, reason).into_response()
}
