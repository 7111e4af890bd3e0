use clap::Parser;
use webhook::{app, options::Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The Kubernetes client uses rustls too; ring is the one provider compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = Options::parse();
    app::init_tracing(options.log_format);
    app::run(options, shutdown_signal()).await
}

/// Completes on SIGTERM (sent by the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
