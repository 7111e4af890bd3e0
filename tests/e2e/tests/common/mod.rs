//! Scenarios of the acceptance suite that the demo does not show: install with
//! RBAC checks, the webhook stopped, the auto policy, a broken approvals
//! document and a registry with basic auth.

use anyhow::{Context, Result, ensure};
use e2e::hub::{HUB, Hub, REDIS, SERVICES, SYSTEM, WebhookRules};
use e2e::scenarios;

/// Scenario 1: the manifests apply server-side, and re-apply after an approvals
/// edit without a conflict. Each component runs as the ServiceAccount that the
/// manifests give it, and RBAC rejects what they do not grant.
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

    // RBAC rejects each request that the manifests do not grant.
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

    // An upgrade re-applies the manifests after operators edited the approvals. The
    // manifests do not contain the approvals ConfigMap, so server-side apply without
    // --force-conflicts succeeds and keeps the edit.
    let edited = format!("{}# edited by an operator\n", hub.approvals().await?);
    hub.set_approvals(&edited).await?;
    hub.apply_local_overlay(WebhookRules::Workloads)
        .await
        .context("install: the manifests re-apply after an approvals edit")?;
    let approvals = hub.approvals().await?;
    ensure!(approvals == edited, "install: the re-apply keeps the edited approvals:\n{approvals}");

    hub.start_webhook().await.context("install: the webhook starts")?;
    Ok(())
}

/// Scenario 6: with the webhook stopped, `helm upgrade` succeeds with the chart's
/// own images (the webhook's `failurePolicy: Ignore`), and the next scan reports
/// the workload that misses its approved patch. The webhook is started again.
pub async fn webhook_down(hub: &mut Hub) -> Result<()> {
    hub.stop_webhook().await.context("webhook down: the webhook stops")?;
    hub.helm_upgrade(HUB, &[]).await.context("webhook down: helm upgrade succeeds")?;
    let ledger = hub.deployment_images(HUB, "central-ledger").await?;
    ensure!(
        ledger == scenarios::chart_images(hub, "central-ledger"),
        "webhook down: central-ledger runs the chart's images: {ledger:?}"
    );

    let scan = hub.scan(&["--rollout=off"]).await.context("webhook down: the scan runs")?;
    for container in ["central-ledger", "run-migrations"] {
        let row = scan.row(HUB, "central-ledger", container).cloned().unwrap_or_default();
        ensure!(
            row["status"] == "approved",
            "webhook down: the scan reports central-ledger/{container} as missing its approved patch: {row}"
        );
    }
    ensure!(
        scan.status(HUB, "quoting-service", "quoting-service") == "up to date"
            || scan.status(HUB, "quoting-service", "quoting-service") == "patch available",
        "webhook down: quoting-service has no approval and is not reported as approved"
    );
    hub.start_webhook().await.context("webhook down: the webhook starts again")?;
    Ok(())
}

/// Scenario 7: an `auto` policy lets a scan approve a new patch and roll it out.
/// In the workloads mode the scan patches the Deployment; in the pods-only mode
/// it restarts the Deployment, whose template keeps the chart's tags, and the
/// webhook rewrites the Pods that the controller-manager creates.
pub async fn auto_policy(hub: &Hub) -> Result<()> {
    let adapter = hub.repository("mojaloop/account-lookup-service");
    let api = hub.repository("mojaloop/ml-api-adapter");
    let document = format!(
        "approvals:\n{}policies:\n  - image: {adapter}\n    mode: auto\n  - image: {}\n    scheme: semver-patch\n",
        scenarios::approval_entry(hub, "central-ledger", scenarios::LEDGER_PATCH),
        hub.repository(REDIS)
    );
    hub.set_approvals(&document).await?;

    let scan = hub.scan(&[]).await.context("auto: the scan runs")?;
    let auto_approved = scan.report["autoApproved"].to_string();
    ensure!(
        auto_approved.contains("account-lookup-service") && auto_approved.contains("v10.4.0.2-patch"),
        "auto: the scan approves account-lookup-service v10.4.0.2-patch: {auto_approved}"
    );
    let approvals = hub.approvals().await?;
    ensure!(
        approvals.contains(&format!("image: {adapter}")) && approvals.contains("patch: v10.4.0.2-patch"),
        "auto: the approvals ConfigMap contains the new approval:\n{approvals}"
    );
    let images = hub.deployment_images(HUB, "account-lookup-service").await?;
    ensure!(
        images.values().all(|image| image.contains("account-lookup-service:v10.4.0.2-patch")),
        "auto: the Deployment runs the auto-approved patch: {images:?}"
    );
    let pods = hub.newest_pod_images(HUB, "account-lookup-service").await?;
    ensure!(pods == images, "auto: the new Pods of account-lookup-service run the patch: {pods:?}");

    // The pods-only overlay: the webhook rewrites Pods only, and the CronJob's
    // rollout restarts workloads. An auto policy for ml-api-adapter.
    hub.apply_local_overlay(WebhookRules::PodsOnly).await.context("auto: the pods-only overlay applies")?;
    // The scanner rewrote the document when it approved; the new policy goes first,
    // indented like the policies that follow it.
    let current = hub.approvals().await?;
    let (head, policies) = current.split_once("policies:\n").context("auto: the document keeps its policies")?;
    let indent: String = policies.chars().take_while(|c| *c == ' ').collect();
    let document = format!("{head}policies:\n{indent}- image: {api}\n{indent}  mode: auto\n{policies}");
    hub.set_approvals(&document).await?;
    let before = hub.replica_set_count(HUB, "ml-api-adapter").await?;
    let scan = hub
        .scan(&[])
        .await
        .with_context(|| format!("auto: the pods-only scan runs with the approvals\n{document}"))?;
    ensure!(
        scan.report["autoApproved"].to_string().contains("ml-api-adapter"),
        "auto: the scan approves ml-api-adapter: {}",
        scan.report["autoApproved"]
    );
    let template = hub.deployment_images(HUB, "ml-api-adapter").await?;
    ensure!(
        template == scenarios::chart_images(hub, "ml-api-adapter"),
        "auto: in pods-only mode the Deployment's template keeps the chart's tags: {template:?}"
    );
    testsupport::wait::eventually("a new ReplicaSet of ml-api-adapter", std::time::Duration::from_secs(30), || async {
        Ok(hub.replica_set_count(HUB, "ml-api-adapter").await? > before)
    })
    .await?;
    let pods = hub.newest_pod_images(HUB, "ml-api-adapter").await?;
    ensure!(
        pods["ml-api-adapter"].contains("ml-api-adapter:v10.4.0.2-patch"),
        "auto: the restarted Pods of ml-api-adapter come out patched: {pods:?}"
    );
    ensure!(pods["cache"] == hub.image(REDIS, "7.2.4"), "auto: the unapproved sidecar keeps its tag: {pods:?}");
    Ok(())
}

/// Scenario 8: a document that cannot be parsed changes nothing that was
/// approved before, and the scan reports the error.
pub async fn garbage_approvals(hub: &Hub) -> Result<()> {
    let ledger_base = hub.image("mojaloop/central-ledger", "v10.4.0");
    let ledger_patched = scenarios::patched_image(hub, "central-ledger", scenarios::LEDGER_PATCH);
    hub.wait_for_pod_image(HUB, &ledger_base, &ledger_patched)
        .await
        .context("garbage: the approval is in force before")?;

    let good = hub.approvals().await?;
    hub.set_approvals("approvals: [ {image: \"unterminated\n\t- :::\n").await?;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let admitted = hub.dry_run_pod_image(HUB, &ledger_base).await?;
    ensure!(admitted == ledger_patched, "garbage: the last good approvals stay in force, got {admitted}");

    // The scanner goes on with the last good approvals, which an earlier scenario's scan
    // recorded: it stores its report and exits with status 2 only after the scan.
    let template_before = hub.deployment_images(HUB, "central-ledger").await?;
    let pods_before = hub.newest_pod_images(HUB, "central-ledger").await?;
    let failed = hub.scan(&["--rollout=off"]).await;
    let error = format!("{:#}", failed.as_ref().err().context("garbage: the scan exits with an error")?);
    ensure!(
        error.contains("exit status: 2") && error.contains("image-patch-approvals") && error.contains("cannot be parsed"),
        "garbage: the scan reports the unparsable approvals and exits with status 2: {error}"
    );

    let report = stored_report(hub).await?;
    let configuration_error = report["configurationError"].as_str().unwrap_or_default();
    ensure!(
        configuration_error.contains("image-patch-approvals")
            && configuration_error.contains("line ")
            && configuration_error.contains("used the last good approvals, recorded at"),
        "garbage: the stored report names the error and the last good approvals: {}",
        report["configurationError"]
    );
    let stored = hub.get_json(&["-n", SYSTEM, "get", "configmap", "image-patch-report"]).await?;
    let table = stored["data"]["report.txt"].as_str().unwrap_or_default();
    ensure!(table.contains("configuration error: "), "garbage: the stored table shows the error: {table}");
    ensure!(
        report["autoApproved"].as_array().is_some_and(Vec::is_empty),
        "garbage: the scan approves nothing automatically: {}",
        report["autoApproved"]
    );
    ensure!(
        hub.approvals().await?.contains("unterminated"),
        "garbage: the scan leaves the document that the operator is editing alone"
    );
    ensure!(
        hub.deployment_images(HUB, "central-ledger").await? == template_before,
        "garbage: the scan leaves the central-ledger Deployment unchanged"
    );
    ensure!(
        hub.newest_pod_images(HUB, "central-ledger").await? == pods_before,
        "garbage: the central-ledger Pods keep their images"
    );
    let admitted = hub.dry_run_pod_image(HUB, &ledger_base).await?;
    ensure!(admitted == ledger_patched, "garbage: after the scan the approval is still in force, got {admitted}");

    // The operator repairs the document.
    hub.set_approvals(&good).await?;
    Ok(())
}

/// Reads the JSON report that the last scan stored in the ConfigMap `image-patch-report`.
async fn stored_report(hub: &Hub) -> Result<serde_json::Value> {
    let stored = hub.get_json(&["-n", SYSTEM, "get", "configmap", "image-patch-report"]).await?;
    let text = stored["data"]["report.json"].as_str().context("the report ConfigMap has the key report.json")?;
    serde_json::from_str(text).context("report.json is JSON")
}

/// Scenario 9: the scanner reads a registry that needs basic auth with the
/// credentials of the workload's `imagePullSecrets`, and never shows them.
pub async fn private_registry(hub: &mut Hub) -> Result<()> {
    const USER: &str = "puller";
    const PASSWORD: &str = "e2e-pull-secret-value";
    const PRIVATE: &str = "private";
    let registry = testsupport::Registry::start_with_basic_auth(USER, PASSWORD)
        .await
        .context("private: the basic-auth registry starts")?;
    testsupport::seed::push_image(
        registry.address(),
        "mojaloop/quoting-service",
        &["v10.4.0", "v10.4.0.1-patch"],
        &registry.auth(),
    )
    .await
    .context("private: the images are pushed")?;
    hub.add_insecure_registry(registry.address());
    hub.cluster
        .create_namespace(PRIVATE, &[(e2e::hub::OPT_IN_LABEL, "true")])
        .await
        .context("private: the namespace is created")?;
    hub.kubectl(&[
        "-n",
        PRIVATE,
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.address()),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ])
    .await?;
    let mut args: Vec<String> = SERVICES
        .iter()
        .filter(|service| **service != "quoting-service")
        .map(|service| format!("--set=services.{service}=null"))
        .collect();
    args.push(format!("--set=imageRegistry={}", registry.address()));
    args.push("--set=imagePullSecrets[0].name=regcred".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    hub.helm_upgrade(PRIVATE, &args).await.context("private: helm install")?;

    let scan = hub.scan(&["--rollout=off"]).await.context("private: the scan runs")?;
    let row = scan.row(PRIVATE, "quoting-service", "quoting-service").cloned().unwrap_or_default();
    ensure!(
        row["status"] == "patch available" && row["newestPatch"] == "v10.4.0.1-patch",
        "private: the scan reads the tags with the pull secret: {row}\n{}",
        scan.log
    );
    let everything = format!("{}{}{}", scan.report, scan.log, scenarios::delivered_text(hub));
    ensure!(!everything.contains(PASSWORD), "private: the password appears nowhere");
    drop(registry);
    Ok(())
}
