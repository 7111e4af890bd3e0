//! Wiring: options to store, approvals source, TLS reloader, router and server.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use kube::Client;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::options::{LogFormat, Options};
use crate::routes::{self, AppState, Limits};
use crate::server::{self, ServerLimits};
use crate::tls::{self, CertificateResolver};

/// Sets up tracing: JSON or plain lines, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only help a terminal; in a file or a pipe they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Plain => builder.init(),
    }
}

/// Binds the listener, connects to the API server unless approvals come from a file, and
/// serves until `shutdown` completes.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let client = match options.approvals_file {
        Some(_) => None,
        None => Some(
            Client::try_default()
                .await
                .context("cannot configure the Kubernetes client")?,
        ),
    };
    serve(options, listener, client, shutdown).await
}

/// Serves on `listener` until `shutdown` completes. Approvals come from `options.approvals_file`
/// when set, else from the ConfigMap through `client`.
pub async fn serve(
    options: Options,
    listener: TcpListener,
    client: Option<Client>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let mut state = AppState::new(metrics.clone());
    state.mode = options.mode;
    state.protected_namespaces = vec!["kube-system".to_string(), options.namespace.clone()];
    state.limits = Limits {
        max_body_bytes: options.max_body_bytes,
        body_timeout: options.request_timeout,
    };

    let certified = tls::certified_key_from_files(&options.tls_cert, &options.tls_key)
        .context("cannot load the TLS certificate")?;
    let resolver = Arc::new(CertificateResolver::new(certified));
    let tls_config =
        tls::server_config(resolver.clone()).context("cannot build the TLS configuration")?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(resolver.watch_files(
        options.tls_cert.clone(),
        options.tls_key.clone(),
        options.tls_poll_interval,
        metrics.clone(),
    ));
    match (&options.approvals_file, client) {
        (Some(path), _) => {
            tasks.spawn(
                state
                    .store
                    .clone()
                    .poll_file(path.clone(), options.approvals_poll_interval),
            );
        }
        (None, Some(client)) => {
            tasks.spawn(
                state
                    .store
                    .clone()
                    .watch_configmap(client, options.namespace.clone()),
            );
        }
        (None, None) => {
            anyhow::bail!("no approvals source: give --approvals-file or a Kubernetes client")
        }
    }

    let shutting_down = state.shutting_down.clone();
    let delay = options.shutdown_delay;
    let stop_accepting = async move {
        shutdown.await;
        shutting_down.store(true, Ordering::Release);
        tracing::info!(delay = ?delay, "shutdown signal received; readiness now fails");
        tokio::time::sleep(delay).await;
    };

    let address = listener.local_addr().context("listener has no address")?;
    tracing::info!(%address, mode = ?options.mode, "serving admission reviews");
    let limits = ServerLimits {
        drain_timeout: options.drain_timeout,
        ..ServerLimits::default()
    };
    server::serve(
        listener,
        Arc::new(tls_config),
        routes::router(state),
        limits,
        stop_accepting,
    )
    .await;

    tasks.abort_all();
    tracing::info!("stopped");
    Ok(())
}
