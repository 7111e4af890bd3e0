//! The baseline of the webhook benchmark: an axum server behind rustls that accepts
//! connections the way the webhook does (tokio-rustls, TLS 1.3 and 1.2 with ring,
//! HTTP/1.1 only, no session resumption) and returns one fixed AdmissionReview for every
//! `POST /mutate`. It reads each body whole but never parses it, so the difference
//! between the two servers is the webhook's own work: parsing, deciding, patching,
//! logging and metrics.
//!
//! With `--parse` it also reads each body with the webhook's request parser
//! ([`webhook::admission::parse_review`]) before it returns the fixed response. That server shows how much of
//! the webhook's cost is reading the request at all, apart from what it does with it.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::version;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Options of the baseline server.
#[derive(Debug, Parser)]
struct Options {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// PEM certificate chain.
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    tls_key: PathBuf,
    /// Whether each body is parsed as the webhook does before the fixed response.
    #[arg(long)]
    parse: bool,
}

const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-4000-8000-000000000000","allowed":true}}"#;

async fn mutate(body: Bytes) -> ([(header::HeaderName, &'static str); 1], &'static str) {
    // The body is read to the end, as the webhook must, and dropped unparsed.
    drop(body);
    ([(header::CONTENT_TYPE, "application/json")], ANSWER)
}

async fn parse_then_answer(body: Bytes) -> Response {
    match webhook::admission::parse_review(&body) {
        Ok(request) => {
            // The parsed request must not be optimized away unread.
            std::hint::black_box(&request);
            ([(header::CONTENT_TYPE, "application/json")], ANSWER).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

fn tls_config(options: &Options) -> anyhow::Result<ServerConfig> {
    let certificates = rustls_pemfile::certs(&mut BufReader::new(File::open(&options.tls_cert)?))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot read the certificate")?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(File::open(&options.tls_key)?))
        .context("cannot read the key")?
        .context("the key file contains no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&options)?));
    let router = if options.parse {
        Router::new().route("/mutate", post(parse_then_answer))
    } else {
        Router::new().route("/mutate", post(mutate))
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!("baseline listening on {}", options.listen);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = terminate.recv() => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            let _ = builder
                .serve_connection(TokioIo::new(tls_stream), service)
                .await;
        });
    }
}
