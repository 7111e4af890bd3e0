//! The scanner binary: one scan per run, as the CronJob starts it.
//! Exit status 2 is a configuration error, 1 an unreachable API server, 0 anything else,
//! registry and Slack faults included, so that the CronJob does not back off on them.
//! An approvals document that cannot be parsed exits with 2 only after the scan, which
//! used the last good approvals, printed and stored its report and sent its notice.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scanner::options::{LogFormat, Options, OutputFormat};
use scanner::scan::{self, ScanError};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    scanner::install_crypto_provider();
    let options = Options::parse();
    init_tracing(options.log_format);
    match run(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let configuration = error.downcast_ref::<ScanError>().is_some_and(|error| matches!(error, ScanError::Config(_)));
            if configuration {
                tracing::error!(error = format!("{error:#}"), "configuration error; fix the configuration that the error names");
            } else {
                tracing::error!(error = format!("{error:#}"), "scan failed");
            }
            ExitCode::from(if configuration { 2 } else { 1 })
        }
    }
}

async fn run(options: &Options) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context("cannot build a Kubernetes client from the in-cluster config or kubeconfig")?;
    let report = scan::run(client, options).await?;
    match options.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
    scan::check_configuration(&report)?;
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only help a terminal; in a file or a pipe they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
