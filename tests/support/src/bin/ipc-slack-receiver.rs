//! Runs the Slack webhook stand-in on its own, for `tests/stack/start.sh` and
//! the demo: prints the webhook URL, then one line of JSON per message.

use anyhow::Context;
use clap::Parser;
use testsupport::slack::{Reply, SlackReceiver};

/// Stand-in for a Slack incoming webhook on loopback.
#[derive(Parser)]
#[command(version)]
struct Options {
    /// Address to listen on. Port 0 takes a free port.
    #[arg(long, env = "IPC_SLACK_RECEIVER_ADDR", default_value = "127.0.0.1:0")]
    addr: String,
    /// File to write the webhook URL to once listening.
    #[arg(long, env = "IPC_SLACK_RECEIVER_URL_FILE")]
    url_file: Option<std::path::PathBuf>,
    /// HTTP status for every request instead of `200 ok` (429 adds Retry-After: 1).
    #[arg(long, env = "IPC_SLACK_RECEIVER_STATUS")]
    status: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse();
    let receiver = SlackReceiver::start_on(&options.addr).await?;
    match options.status {
        None | Some(200) => {}
        Some(429) => receiver.set_default_reply(Reply::RateLimited {
            retry_after_seconds: 1,
        }),
        Some(status) => receiver.set_default_reply(Reply::Status {
            status,
            body: "error".into(),
        }),
    }
    let url = receiver.url();
    if let Some(path) = &options.url_file {
        std::fs::write(path, format!("{url}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("listening: {url}");
    let mut messages = receiver.subscribe();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let line = serde_json::json!({
                        "status": message.status,
                        "path": message.path,
                        "body": if message.json.is_null() { serde_json::Value::String(message.raw) } else { message.json },
                    });
                    println!("{line}");
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    eprintln!("skipped {skipped} messages");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = shutdown_signal() => break,
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
