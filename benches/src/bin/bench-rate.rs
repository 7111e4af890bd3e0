//! A fixed-rate load generator for the webhook benchmark, since Debian's `wrk` only runs
//! flat out. It sends `POST` requests with the bodies of a JSON-lines file, in turn, at a
//! fixed rate over a pool of keep-alive HTTPS connections, and records latency in an HDR
//! histogram.
//!
//! Latency runs from the moment a request was due, not from when a connection was free
//! to send it, so a stalled server shows as latency instead of a lower rate (coordinated
//! omission). The summary is one JSON object on stdout.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_rustls::TlsConnector;

/// Options of the load generator.
#[derive(Debug, Parser)]
struct Options {
    /// Server address, `host:port`. Only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:8443")]
    address: String,
    /// Request path.
    #[arg(long, default_value = "/mutate")]
    path: String,
    /// JSON-lines file of request bodies.
    #[arg(long)]
    bodies: PathBuf,
    /// PEM certificate to trust: the server's self-signed certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Requests a second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds of load before measuring, to open connections and warm caches.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

/// One due request: its body and the moment it was due.
struct Job {
    body: Bytes,
    due: Instant,
    measured: bool,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

async fn connect(
    options: &Options,
    tls: &TlsConnector,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(&options.address)
        .await
        .with_context(|| format!("cannot connect to {}", options.address))?;
    stream.set_nodelay(true)?;
    let stream = tls
        .connect(ServerName::try_from("localhost")?.to_owned(), stream)
        .await
        .context("TLS handshake failed")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn worker(
    options: Arc<Options>,
    tls: TlsConnector,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    histogram: Arc<std::sync::Mutex<Histogram<u64>>>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut sender = connect(&options, &tls).await?;
    loop {
        let Some(job) = jobs.lock().await.recv().await else {
            return Ok(());
        };
        if sender.ready().await.is_err() {
            sender = connect(&options, &tls).await?;
        }
        let request = http::Request::post(&options.path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(job.body))?;
        let succeeded = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await;
                status.is_success() && body.is_ok()
            }
            Err(_) => false,
        };
        if !job.measured {
            continue;
        }
        if succeeded {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            let micros = job.due.elapsed().as_micros().max(1) as u64;
            histogram
                .lock()
                .expect("no worker panics while holding the lock")
                .saturating_record(micros);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn tls_connector(options: &Options) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let pem =
        fs::read(&options.ca).with_context(|| format!("cannot read {}", options.ca.display()))?;
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(certificate?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = Arc::new(Options::parse());
    let host = options
        .address
        .rsplit_once(':')
        .map_or(options.address.as_str(), |(host, _)| host);
    anyhow::ensure!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "bench-rate only loads loopback addresses, not {host}"
    );
    anyhow::ensure!(options.rate > 0, "--rate must be positive");
    let bodies: Vec<Bytes> = fs::read_to_string(&options.bodies)
        .with_context(|| format!("cannot read {}", options.bodies.display()))?
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| Bytes::copy_from_slice(line.as_bytes()))
        .collect();
    anyhow::ensure!(
        !bodies.is_empty(),
        "{} contains no bodies",
        options.bodies.display()
    );

    let tls = tls_connector(&options)?;
    let histogram = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let counters = Arc::new(Counters::default());
    let (queue, jobs) = mpsc::unbounded_channel();
    let jobs = Arc::new(Mutex::new(jobs));
    let mut workers = Vec::new();
    for _ in 0..options.connections {
        workers.push(tokio::spawn(worker(
            options.clone(),
            tls.clone(),
            jobs.clone(),
            histogram.clone(),
            counters.clone(),
        )));
    }

    // A thread of its own paces the requests: tokio's timer ticks in whole milliseconds,
    // which would bunch requests together and add up to 1 ms to each latency.
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let warmup = options.rate * options.warmup_seconds;
    let total = warmup + options.rate * options.seconds;
    let pacer = std::thread::spawn(move || -> anyhow::Result<Instant> {
        let start = Instant::now();
        let mut measure_start = start;
        for sent in 0..total {
            let due = start + interval.mul_f64(sent as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if sent == warmup {
                measure_start = Instant::now();
            }
            let body = bodies[(sent % bodies.len() as u64) as usize].clone();
            queue
                .send(Job {
                    body,
                    due,
                    measured: sent >= warmup,
                })
                .map_err(|_| anyhow::anyhow!("every connection failed"))?;
        }
        Ok(measure_start)
    });
    for worker in workers {
        worker.await??;
    }
    let measure_start = pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))??;
    let elapsed = measure_start.elapsed().as_secs_f64();

    let histogram = histogram.lock().expect("workers have finished");
    let ok = counters.ok.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "target_rate": options.rate,
            "achieved_rate": (ok + failed) as f64 / elapsed,
            "requests": ok,
            "errors": failed,
            "connections": options.connections,
            "p50_ms": millis(0.5),
            "p90_ms": millis(0.9),
            "p99_ms": millis(0.99),
            "p999_ms": millis(0.999),
            "max_ms": histogram.max() as f64 / 1000.0,
        })
    );
    Ok(())
}
