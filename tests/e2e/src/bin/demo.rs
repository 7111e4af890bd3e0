//! The quick-start demo: a Mojaloop-shaped Helm release on the local stack, from
//! the first Slack notice to an approved patch and back. `demo/run.sh` builds
//! what it needs and runs it; the steps are the acceptance suite's own.

use std::process::ExitCode;

use anyhow::{Context, Result};
use e2e::hub::{Helm, Hub};
use e2e::scenarios::{self, Narrator};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let helm = match std::env::args().nth(1).as_deref() {
        None | Some("--helm4") => Helm::V4,
        Some("--helm3") => Helm::V3,
        Some(other) => {
            eprintln!("unknown argument {other:?}: use --helm4 (the default) or --helm3");
            return ExitCode::from(2);
        }
    };
    let narrator = Narrator::printing();
    narrator.step("Start the local stack: etcd, kube-apiserver, kube-controller-manager, a registry, a Slack stand-in");
    let mut hub = match Hub::start(helm).await {
        Ok(hub) => hub,
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = walk_through(&mut hub, narrator).await;
    narrator.step("Clean up");
    let stopped = hub.shut_down().await;
    match result.and(stopped) {
        Ok(()) => {
            narrator.say("everything stopped; the demo passed");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn walk_through(hub: &mut Hub, narrator: Narrator) -> Result<()> {
    narrator.say(&format!("registry with mojaloop/* images at {}", hub.registry.address()));
    narrator.step("Install the product: kubectl apply --server-side -k manifests/, certs-script/certs.sh, the webhook");
    hub.install().await.context("install")?;
    hub.start_webhook().await.context("the webhook starts")?;
    narrator.say("the webhook runs as ServiceAccount image-patch-webhook; the scanner as image-patch-scanner");

    scenarios::deploy(hub, narrator).await.context("deploy")?;
    scenarios::notice(hub, narrator).await.context("notice")?;
    scenarios::approve_and_upgrade(hub, narrator).await.context("approve and upgrade")?;
    scenarios::roll_back(hub, narrator).await.context("roll back")?;
    Ok(())
}
