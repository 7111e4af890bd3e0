//! The whole app over real TLS on 127.0.0.1: admission, protocol versions, a certificate
//! swapped on disk while requests run, and graceful shutdown of a request in flight.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook::options::Options;

/// A running app and the files it serves from.
struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    serving_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts the app with a certificate from the certs script and [`APPROVALS`] from a file.
    async fn start() -> Self {
        // reqwest is built without a crypto provider of its own; ring is the one compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let serving_dir = dir.path().join("serving");
        run_certs_script(&dir.path().join("first"), &[]);
        std::fs::create_dir(&serving_dir).unwrap();
        for file in ["tls.crt", "tls.key"] {
            std::fs::copy(dir.path().join("first").join(file), serving_dir.join(file)).unwrap();
        }
        let approvals = dir.path().join("approvals.yaml");
        std::fs::write(&approvals, APPROVALS).unwrap();

        let options = Options::try_parse_from([
            "image-patch-webhook".as_ref(),
            "--tls-cert".as_ref(),
            serving_dir.join("tls.crt").as_os_str(),
            "--tls-key".as_ref(),
            serving_dir.join("tls.key").as_os_str(),
            "--tls-poll-interval=50ms".as_ref(),
            "--approvals-file".as_ref(),
            approvals.as_os_str(),
            "--approvals-poll-interval=50ms".as_ref(),
            "--drain-timeout=5s".as_ref(),
        ])
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(webhook::app::serve(options, listener, None, async {
            let _ = stopped.await;
        }));

        let running = Self {
            address,
            stop: Some(stop),
            task,
            serving_dir,
            _dir: dir,
        };
        let client = running.client();
        wait_for("readiness", || async {
            client
                .get(running.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        running
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    /// Builds a client that trusts the CAs of `ca-bundle.crt` in `dir` and opens a new
    /// connection for every request, so that each request gets the certificate in force.
    fn client_trusting(&self, dir: &Path) -> reqwest::Client {
        let bundle = std::fs::read(dir.join("ca-bundle.crt")).unwrap();
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&bundle).unwrap())
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .resolve("localhost", self.address)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn client(&self) -> reqwest::Client {
        self.client_trusting(&self.dir().join("first"))
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls `condition` every 20 ms for up to 10 s.
async fn wait_for<F, Fut>(description: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {description}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies `from` over `to` by a rename, so that a reader never sees half a file.
fn replace_file(from: &Path, to: &Path) {
    let temporary = to.with_extension("tmp");
    std::fs::copy(from, &temporary).unwrap();
    std::fs::rename(&temporary, to).unwrap();
}

/// Fetches `/metrics` with `client`.
async fn metrics_text(client: &reqwest::Client, running: &Running) -> String {
    let response = client.get(running.url("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    let pem = std::fs::read(pem_file).unwrap();
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn admission_over_tls() {
    let running = Running::start().await;
    let review = review("deployment");

    let response = running
        .client()
        .post(running.url("/mutate"))
        .json(&review)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let patched = apply(&review, &answer["response"]);
    assert_eq!(
        image_of(&patched, "deployment", "containers", "app"),
        PATCHED
    );
    let metrics = metrics_text(&running.client(), &running).await;
    assert!(
        metrics.contains("image_patch_webhook_approvals_loaded 3"),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test]
async fn tls_versions_1_2_and_1_3_accepted() {
    let running = Running::start().await;

    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let bundle = std::fs::read(running.dir().join("first/ca-bundle.crt")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&bundle).unwrap())
            .tls_version_min(version)
            .tls_version_max(version)
            .resolve("localhost", running.address)
            .build()
            .unwrap();

        let response = client.get(running.url("/healthz")).send().await;

        assert!(
            response.is_ok_and(|response| response.status() == 200),
            "{version:?}"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn tls_1_1_rejected() {
    let running = Running::start().await;

    // rustls cannot speak TLS 1.1 at all, so the openssl client checks the server's refusal.
    let output = tokio::process::Command::new("openssl")
        // Security level 0 lets OpenSSL 3 offer TLS 1.1 at all.
        .args([
            "s_client",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-connect",
        ])
        .arg(running.address.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();

    assert!(
        !output.status.success(),
        "TLS 1.1 handshake succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    running.stop().await;
}

#[tokio::test]
async fn certificate_swap_while_requests_run() {
    let running = Running::start().await;
    // A second certificate from a new CA; its bundle trusts the old CA too.
    let second = running.dir().join("second");
    std::fs::create_dir(&second).unwrap();
    for file in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        std::fs::copy(running.dir().join("first").join(file), second.join(file)).unwrap();
    }
    run_certs_script(&second, &["--rotate-ca"]);
    let client = running.client_trusting(&second);
    let new_cert = der_of(&second.join("tls.crt"));
    let review = serde_json::to_vec(&review("pod")).unwrap();

    let requests = {
        let client = client.clone();
        let url = running.url("/mutate");
        let new_cert = new_cert.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut served_new = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            // Bounded: stops after 20 requests on the new certificate or after 10 s.
            while served_new < 20 && Instant::now() < deadline {
                match client.post(&url).body(review.clone()).send().await {
                    Ok(response) if response.status() == 200 => {
                        let info = response
                            .extensions()
                            .get::<reqwest::tls::TlsInfo>()
                            .unwrap();
                        if info.peer_certificate() == Some(&new_cert[..]) {
                            served_new += 1;
                        }
                    }
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(error) => failures.push(format!("{error:?}")),
                }
            }
            (failures, served_new)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Certificate first, key a moment later, as a non-atomic writer would: the mismatched
    // pair in between must not be swapped in.
    replace_file(
        &second.join("tls.crt"),
        &running.serving_dir.join("tls.crt"),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    replace_file(
        &second.join("tls.key"),
        &running.serving_dir.join("tls.key"),
    );

    let (failures, served_new) = requests.await.unwrap();

    let metrics = metrics_text(&client, &running).await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(served_new, 20, "{metrics}");
    assert!(
        metrics.contains(r#"image_patch_webhook_certificate_reloads_total{outcome="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"image_patch_webhook_certificate_reloads_total{outcome="failure"} 1"#),
        "{metrics}"
    );
    running.stop().await;
}

/// Opens a TLS client connection to the app, trusting the first CA.
async fn raw_connection(running: &Running) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(der_of(&running.dir().join("first/ca.crt")).into())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(webhook::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(running.address).await.unwrap();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn shutdown_finishes_request_in_flight() {
    let running = Running::start().await;
    let body = serde_json::to_vec(&review("pod")).unwrap();
    let mut connection = raw_connection(&running).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    connection.write_all(&body[..body.len() / 2]).await.unwrap();
    connection.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let address = running.address;
    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    connection.write_all(&body[body.len() / 2..]).await.unwrap();
    connection.flush().await.unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after the response; how the close reads does not matter.
    let _ = connection.read_to_end(&mut answer).await;
    stopping.await.unwrap();

    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(r#""patchType":"JSONPatch""#), "{answer}");
    assert!(
        TcpStream::connect(address).await.is_err(),
        "listener still open after shutdown"
    );
}
