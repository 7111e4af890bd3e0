//! Scenarios of the acceptance suite that the demo does not show.

use anyhow::{Context, Result, ensure};
use e2e::hub::{HUB, Hub, SYSTEM};

/// Scenario 1: the manifests apply server-side, each component runs as the
/// ServiceAccount that the manifests give it, and RBAC holds it to its grants.
pub async fn install(hub: &mut Hub) -> Result<()> {
    hub.install().await?;

    let deployment = hub.deployment(SYSTEM, "image-patch-webhook").await?;
    ensure!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == "image-patch-webhook",
        "install: the webhook Deployment runs as image-patch-webhook"
    );
    let cron_job = hub.get_json(&["-n", SYSTEM, "get", "cronjob", "image-patch-scanner"]).await?;
    ensure!(
        cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == "image-patch-scanner",
        "install: the scanner CronJob runs as image-patch-scanner"
    );

    // Each account is refused what its manifests do not grant.
    let scanner = hub.service_account_kubeconfig("image-patch-scanner")?.to_owned();
    let webhook = hub.service_account_kubeconfig("image-patch-webhook")?.to_owned();
    let refused = [
        (&scanner, vec!["-n", HUB, "create", "configmap", "intruder"], "the scanner creates a ConfigMap outside its namespace"),
        (&scanner, vec!["-n", HUB, "get", "secrets"], "the scanner lists Secrets"),
        (&scanner, vec!["-n", SYSTEM, "delete", "configmap", "image-patch-approvals"], "the scanner deletes the approvals"),
        (&webhook, vec!["-n", SYSTEM, "patch", "configmap", "image-patch-approvals", "--type=merge", "-p", "{\"data\":{}}"], "the webhook edits the approvals"),
        (&webhook, vec!["-n", HUB, "get", "deployments"], "the webhook reads workloads"),
    ];
    for (kubeconfig, args, what) in refused {
        let (succeeded, output) = hub.kubectl_as(kubeconfig, &args).await?;
        ensure!(
            !succeeded && output.stderr.contains("forbidden"),
            "install: RBAC refuses that {what}: {}{}",
            output.stdout,
            output.stderr
        );
    }
    let (succeeded, output) = hub
        .kubectl_as(&webhook, &["-n", SYSTEM, "get", "configmap", "image-patch-approvals"])
        .await?;
    ensure!(succeeded, "install: the webhook reads the approvals: {}", output.stderr);

    hub.start_webhook().await.context("install: the webhook starts")?;
    Ok(())
}
