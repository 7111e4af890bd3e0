//! A stand-in for Slack's incoming webhooks on loopback.
//!
//! It records every POSTed body and replies as Slack does, with `200` and the
//! body `ok`. Tests can schedule other replies for the next requests: a `500`,
//! a `429` with `Retry-After`, another status and body such as
//! `404 no_service`, or no reply at all until the client gives up.

use crate::{Error, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The path part of [`SlackReceiver::url`], shaped like a real webhook URL.
pub const WEBHOOK_PATH: &str = "/services/T0TEST0000/B0TEST0000/image-patch-test-secret";

/// How the receiver replies to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `200` with the body `ok`, as Slack confirms a delivered message.
    Ok,
    /// `500` with the body `internal_error`.
    ServerError,
    /// `429` with `Retry-After: <seconds>` and the body `rate_limited`.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after_seconds: u64,
    },
    /// Any status and body, such as `404` and `no_service` for a revoked hook.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body.
        body: String,
    },
    /// No reply: the request hangs until the client times out or the receiver
    /// stops.
    Stall,
}

/// One request that the receiver recorded.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// The request path.
    pub path: String,
    /// The body parsed as JSON, or `Null` when it is not JSON.
    pub json: serde_json::Value,
    /// The body as text.
    pub raw: String,
    /// The status the receiver replied with, or `None` for [`Reply::Stall`].
    pub status: Option<u16>,
}

impl ReceivedMessage {
    /// Returns the message's `text` field, if it has one.
    pub fn text(&self) -> Option<&str> {
        self.json.get("text").and_then(|text| text.as_str())
    }

    /// Returns whether the receiver confirmed delivery with `200 ok`.
    pub fn delivered(&self) -> bool {
        self.status == Some(200)
    }
}

#[derive(Default)]
struct Settings {
    scheduled: VecDeque<(Reply, usize)>,
    default_reply: Option<Reply>,
    messages: Vec<ReceivedMessage>,
}

struct Shared {
    settings: Mutex<Settings>,
    events: broadcast::Sender<ReceivedMessage>,
    shutdown: watch::Receiver<()>,
}

impl Shared {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running Slack webhook receiver, stopped on drop.
pub struct SlackReceiver {
    shared: Arc<Shared>,
    address: String,
    _shutdown: watch::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl SlackReceiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> Result<SlackReceiver> {
        SlackReceiver::start_on("127.0.0.1:0").await
    }

    /// Starts a receiver on `address`, which should be a loopback address.
    pub async fn start_on(address: &str) -> Result<SlackReceiver> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| {
                Error::io(
                    format!("cannot bind the Slack receiver to {address}"),
                    error,
                )
            })?;
        let address = listener
            .local_addr()
            .map_err(|error| Error::io("cannot read the Slack receiver's address", error))?
            .to_string();
        let (shutdown_sender, shutdown) = watch::channel(());
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            settings: Mutex::new(Settings::default()),
            events,
            shutdown: shutdown.clone(),
        });
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let mut stop = shutdown;
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "Slack receiver stopped");
            }
        });
        tracing::info!(%address, "Slack receiver started");
        Ok(SlackReceiver {
            shared,
            address,
            _shutdown: shutdown_sender,
            server,
        })
    }

    /// Returns the webhook URL to configure in the scanner.
    pub fn url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.address)
    }

    /// Returns the receiver's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns every request received so far, in order, whatever the reply was.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.settings().messages.clone()
    }

    /// Returns the requests that received `200 ok`.
    pub fn delivered(&self) -> Vec<ReceivedMessage> {
        self.messages()
            .into_iter()
            .filter(ReceivedMessage::delivered)
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_messages(&self) {
        self.shared.settings().messages.clear();
    }

    /// Replies with `reply` to the next `times` requests, after the replies
    /// scheduled before.
    pub fn reply_next(&self, reply: Reply, times: usize) {
        if times > 0 {
            self.shared.settings().scheduled.push_back((reply, times));
        }
    }

    /// Replies with `reply` whenever no scheduled reply is left, instead of `ok`.
    pub fn set_default_reply(&self, reply: Reply) {
        self.shared.settings().default_reply = Some(reply);
    }

    /// Subscribes to requests as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<ReceivedMessage> {
        self.shared.events.subscribe()
    }

    /// Waits until at least `count` requests have been recorded and returns all.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        crate::cluster::wait_for(&format!("{count} Slack messages"), timeout, || async {
            self.shared.settings().messages.len() >= count
        })
        .await?;
        Ok(self.messages())
    }
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let reply = {
        let mut settings = shared.settings();
        let reply = match settings.scheduled.front_mut() {
            Some((reply, remaining)) => {
                let reply = reply.clone();
                *remaining -= 1;
                if *remaining == 0 {
                    settings.scheduled.pop_front();
                }
                reply
            }
            None => settings.default_reply.clone().unwrap_or(Reply::Ok),
        };
        let message = ReceivedMessage {
            path,
            json,
            raw,
            status: status_of(&reply),
        };
        settings.messages.push(message.clone());
        let _ = shared.events.send(message);
        reply
    };
    let (status, body) = match reply {
        Reply::Ok => (StatusCode::OK, "ok".to_owned()),
        Reply::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error".to_owned(),
        ),
        Reply::RateLimited {
            retry_after_seconds,
        } => {
            let mut response =
                text_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            return response;
        }
        Reply::Status { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body,
        ),
        Reply::Stall => {
            let mut shutdown = shared.shutdown.clone();
            let _ = shutdown.changed().await;
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "receiver stopped".to_owned(),
            )
        }
    };
    text_response(status, body)
}

fn status_of(reply: &Reply) -> Option<u16> {
    match reply {
        Reply::Ok => Some(200),
        Reply::ServerError => Some(500),
        Reply::RateLimited { .. } => Some(429),
        Reply::Status { status, .. } => Some(*status),
        Reply::Stall => None,
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}
