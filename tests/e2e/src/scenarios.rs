//! The acceptance scenarios that the demo also walks through: deploy, notice,
//! approve and upgrade, roll back. Each checks what it shows and fails with the
//! name of the check; the narration only prints when the narrator is on.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::hub::{HUB, Helm, Hub, OUTSIDE, REDIS, SERVICES};

/// The annotation in which the webhook records the images an object had before.
pub const PREVIOUS_IMAGES_ANNOTATION: &str = "patches.mojaloop.io/previous-images";
/// The patch of quoting-service that the operator approves: its newest.
pub const QUOTING_PATCH: &str = "v10.4.0.3-patch";
/// The patch of central-ledger that the operator approves: its newest.
pub const LEDGER_PATCH: &str = "v10.4.0.2-patch";

/// Prints the demo's narration, or nothing in the tests.
#[derive(Clone, Copy, Debug)]
pub struct Narrator {
    enabled: bool,
}

impl Narrator {
    /// A narrator that prints to stdout.
    pub fn printing() -> Narrator {
        Narrator { enabled: true }
    }

    /// A narrator that prints nothing.
    pub fn silent() -> Narrator {
        Narrator { enabled: false }
    }

    /// Prints a step's title.
    pub fn step(&self, title: &str) {
        if self.enabled {
            println!("\n\x1b[1m==> {title}\x1b[0m");
        }
    }

    /// Prints a line of narration.
    pub fn say(&self, text: &str) {
        if self.enabled {
            println!("    {text}");
        }
    }

    /// Prints a block, indented.
    pub fn show(&self, text: &str) {
        if self.enabled {
            for line in text.lines() {
                println!("      | {line}");
            }
        }
    }

    /// Prints the images of a Deployment.
    pub fn show_images(&self, title: &str, images: &BTreeMap<String, String>) {
        if self.enabled {
            println!("    {title}");
            for (container, image) in images {
                println!("      {container:<24} {image}");
            }
        }
    }
}

/// The approvals document of the hub before any approval: the third-party image
/// is versioned `semver-patch`, the Mojaloop images use the default scheme.
pub fn policies(hub: &Hub) -> String {
    format!(
        "policies:\n  - image: {}\n    scheme: semver-patch\n",
        hub.repository(REDIS)
    )
}

/// One approvals entry, in the form that the scanner's notice offers to paste.
pub fn approval_entry(hub: &Hub, service: &str, patch: &str) -> String {
    let repository = format!("mojaloop/{service}");
    format!(
        "  - image: {}\n    version: v10.4.0\n    patch: {patch}\n    digest: {}\n    approvedBy: ops@example.org\n",
        hub.repository(&repository),
        hub.digest(&repository, patch)
    )
}

/// Returns the image that an approval of `patch` of `service` rewrites to.
pub fn patched_image(hub: &Hub, service: &str, patch: &str) -> String {
    let repository = format!("mojaloop/{service}");
    format!("{}@{}", hub.image(&repository, patch), hub.digest(&repository, patch))
}

/// Returns the images that the chart names for `service`, by container name.
pub fn chart_images(hub: &Hub, service: &str) -> BTreeMap<String, String> {
    let main = hub.image(&format!("mojaloop/{service}"), "v10.4.0");
    let mut images = BTreeMap::from([(service.to_owned(), main.clone())]);
    match service {
        "central-ledger" | "account-lookup-service" => {
            images.insert("run-migrations".to_owned(), main);
        }
        "ml-api-adapter" => {
            images.insert("cache".to_owned(), hub.image(REDIS, "7.2.4"));
        }
        _ => {}
    }
    images
}

/// Scenario 2: the chart deploys the four services at their base tags into the
/// opted-in namespace, and quoting-service alone into a namespace that did not
/// opt in.
pub async fn deploy(hub: &Hub, narrator: Narrator) -> Result<()> {
    narrator.step(&format!("Deploy a Mojaloop-shaped chart with {}", hub.helm));
    hub.set_approvals(&policies(hub)).await.context("the policies are written")?;
    hub.helm_upgrade(HUB, &[]).await.context("helm install into mojaloop")?;
    let others: Vec<String> = SERVICES
        .iter()
        .filter(|service| **service != "quoting-service")
        .map(|service| format!("--set=services.{service}=null"))
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    hub.helm_upgrade(OUTSIDE, &others).await.context("helm install into outside")?;
    narrator.say(&format!(
        "release {} in namespace {HUB} (opted in) and in namespace {OUTSIDE} (not opted in)",
        crate::hub::RELEASE
    ));

    for service in SERVICES {
        let images = hub.deployment_images(HUB, service).await?;
        ensure!(images == chart_images(hub, service), "deploy: {HUB}/{service} runs the chart's base tags: {images:?}");
        let pods = hub.newest_pod_images(HUB, service).await?;
        ensure!(pods == images, "deploy: the Pods of {HUB}/{service} run the chart's images: {pods:?}");
    }
    let outside = hub.deployment_images(OUTSIDE, "quoting-service").await?;
    ensure!(outside == chart_images(hub, "quoting-service"), "deploy: {OUTSIDE}/quoting-service runs the base tag");
    for service in SERVICES.iter().filter(|service| **service != "quoting-service") {
        let found = hub.kubectl(&["-n", OUTSIDE, "get", "deployment", service, "--ignore-not-found", "-o", "name"]).await?;
        ensure!(found.stdout.trim().is_empty(), "deploy: {OUTSIDE} has only quoting-service, found {service}");
    }
    narrator.show_images(&format!("{HUB}/quoting-service before:"), &hub.deployment_images(HUB, "quoting-service").await?);
    narrator.show_images(&format!("{HUB}/central-ledger before:"), &hub.deployment_images(HUB, "central-ledger").await?);
    Ok(())
}

/// Returns the text of every block of the Slack messages that the receiver
/// confirmed, joined by newlines.
pub fn delivered_text(hub: &Hub) -> String {
    hub.slack
        .delivered()
        .iter()
        .flat_map(|message| message.json["blocks"].as_array().cloned().unwrap_or_default())
        .filter_map(|block| block["text"]["text"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scenario 3: a scan sends one Slack message with the newest patch of each
/// image, its digest and the approval to paste; a second scan sends none.
pub async fn notice(hub: &Hub, narrator: Narrator) -> Result<String> {
    narrator.step("Scan: the scanner finds newer patches and tells Slack once");
    let first = hub.scan(&[]).await.context("notice: the first scan runs")?;
    let delivered = hub.slack.delivered();
    ensure!(delivered.len() == 1, "notice: the first scan sends exactly one message, sent {}", delivered.len());
    let text = delivered_text(hub);

    let mut expected = vec![
        ("mojaloop/quoting-service".to_owned(), QUOTING_PATCH),
        ("mojaloop/central-ledger".to_owned(), "v10.4.0.2-patch"),
        ("mojaloop/account-lookup-service".to_owned(), "v10.4.0.2-patch"),
        ("mojaloop/ml-api-adapter".to_owned(), "v10.4.0.2-patch"),
    ];
    expected.push((REDIS.to_owned(), "7.2.6"));
    for (repository, patch) in &expected {
        let qualified = hub.repository(repository);
        ensure!(
            text.contains(&format!("*{qualified}*")) && text.contains(&format!("→ `{patch}`")),
            "notice: the message names {qualified} and its newest patch {patch}:\n{text}"
        );
        let digest = hub.digest(repository, patch);
        ensure!(text.contains(&format!("Digest: `{digest}`")), "notice: the message gives the digest of {repository}:{patch}:\n{text}");
        ensure!(
            text.contains(&format!("- image: {qualified}\n")) && text.contains(&format!("  patch: {patch}\n")),
            "notice: the message has the approval to paste for {repository}:\n{text}"
        );
    }
    for not_a_patch in ["v10.4.0-snapshot.1", "v10.4.0.160-snapshot.7", "v10.5.0 `", "7.3.0`"] {
        ensure!(!text.contains(&format!("→ `{not_a_patch}")), "notice: {not_a_patch} is not offered as a patch:\n{text}");
    }
    ensure!(!text.contains(&format!("{OUTSIDE}/")), "notice: the namespace that did not opt in is not scanned:\n{text}");
    ensure!(
        first.status(HUB, "quoting-service", "quoting-service") == "patch available",
        "notice: the report marks quoting-service as patch available: {:#}",
        first.report
    );
    narrator.say("the Slack message, as the receiver got it:");
    narrator.show(&text);

    hub.scan(&[]).await.context("notice: the second scan runs")?;
    ensure!(hub.slack.delivered().len() == 1, "notice: the second scan sends nothing");
    narrator.say("a second scan sends nothing: each patch is announced once");
    Ok(text)
}

/// The approvals document with the two approvals of scenario 4.
pub fn two_approvals(hub: &Hub) -> String {
    format!(
        "approvals:\n{}{}{}",
        approval_entry(hub, "quoting-service", QUOTING_PATCH),
        approval_entry(hub, "central-ledger", LEDGER_PATCH),
        policies(hub)
    )
}

/// Scenario 4: the operator approves two patches, and `helm upgrade` with the
/// unchanged chart rolls them out through the webhook. Returns helm's output.
///
/// Helm 3 sends no request for an object whose rendered manifest and live state
/// did not change, so with Helm 3 a plain `helm upgrade` leaves the workloads as
/// they are (checked here), and `helm upgrade --force` (a replacement) is what
/// passes them through the webhook.
pub async fn approve_and_upgrade(hub: &Hub, narrator: Narrator) -> Result<String> {
    narrator.step("Approve two patches with kubectl patch of the approvals ConfigMap");
    let document = two_approvals(hub);
    narrator.show(&document);
    hub.set_approvals(&document).await?;
    let quoting_patched = patched_image(hub, "quoting-service", QUOTING_PATCH);
    let quoting_base = hub.image("mojaloop/quoting-service", "v10.4.0");
    hub.wait_for_pod_image(HUB, &quoting_base, &quoting_patched)
        .await
        .context("approve: the webhook loads the approvals")?;

    let outside_before = hub.deployment(OUTSIDE, "quoting-service").await?;

    if hub.helm == Helm::V3 {
        narrator.step("helm upgrade with the unchanged chart (Helm 3)");
        hub.helm_upgrade(HUB, &[]).await.context("approve: plain helm 3 upgrade")?;
        let images = hub.deployment_images(HUB, "quoting-service").await?;
        ensure!(
            images["quoting-service"] == quoting_base,
            "approve: Helm 3 sends nothing for an unchanged object, so the image stays: {images:?}"
        );
        narrator.say("Helm 3 sent no request: the rendered manifests and the live objects did not change");
    }

    let force: &[&str] = match hub.helm {
        Helm::V3 => &["--force"],
        Helm::V4 => &[],
    };
    narrator.step(&format!(
        "helm upgrade{} with the unchanged chart ({})",
        if force.is_empty() { "" } else { " --force" },
        hub.helm
    ));
    let output = hub.helm_upgrade(HUB, force).await.context("approve: helm upgrade")?;
    let helm_output = format!("{}{}", output.stdout, output.stderr);
    narrator.say("helm's output:");
    narrator.show(helm_output.trim());
    for (service, patch) in [("quoting-service", QUOTING_PATCH), ("central-ledger", LEDGER_PATCH)] {
        let base = hub.image(&format!("mojaloop/{service}"), "v10.4.0");
        let patched = patched_image(hub, service, patch);
        ensure!(
            helm_output.contains("image-patch:") && helm_output.contains(&format!("{base} rewritten to {patched}")),
            "approve: helm shows the webhook's warning for {service}:\n{helm_output}"
        );
        let deployment = hub.deployment(HUB, service).await?;
        let images = crate::hub::pod_spec_images(&deployment["spec"]["template"]["spec"]);
        let mut expected = chart_images(hub, service);
        for image in expected.values_mut() {
            *image = patched.clone();
        }
        ensure!(images == expected, "approve: {HUB}/{service} stores the approved patch: {images:?}");
        let previous = deployment["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION].as_str().unwrap_or_default();
        ensure!(previous.contains(&base), "approve: {HUB}/{service} records the previous images, found {previous:?}");
        let pods = hub.newest_pod_images(HUB, service).await?;
        ensure!(pods == expected, "approve: the new ReplicaSet's Pods of {service} run the patch: {pods:?}");
    }
    for service in ["account-lookup-service", "ml-api-adapter"] {
        let images = hub.deployment_images(HUB, service).await?;
        ensure!(images == chart_images(hub, service), "approve: unapproved {service} keeps its images: {images:?}");
    }
    let outside_after = hub.deployment(OUTSIDE, "quoting-service").await?;
    ensure!(
        outside_after["metadata"]["resourceVersion"] == outside_before["metadata"]["resourceVersion"],
        "approve: the namespace that did not opt in is untouched"
    );
    narrator.show_images(&format!("{HUB}/quoting-service after:"), &hub.deployment_images(HUB, "quoting-service").await?);
    narrator.show_images(&format!("{HUB}/central-ledger after:"), &hub.deployment_images(HUB, "central-ledger").await?);
    narrator.show_images(&format!("{OUTSIDE}/quoting-service (not opted in):"), &hub.deployment_images(OUTSIDE, "quoting-service").await?);

    // A further upgrade changes nothing: the webhook rewrites the chart's tags to
    // the same patch again, so no pod template changes and no ReplicaSet appears.
    let settled = deployments(hub, HUB).await?;
    let mut replica_sets = BTreeMap::new();
    for service in SERVICES {
        replica_sets.insert(service, hub.replica_set_count(HUB, service).await?);
    }
    hub.helm_upgrade(HUB, &[]).await.context("approve: the further helm upgrade")?;
    let again = deployments(hub, HUB).await?;
    for service in SERVICES {
        ensure!(
            again[service]["spec"]["template"] == settled[service]["spec"]["template"],
            "approve: a further helm upgrade leaves the pod template of {service} as it was"
        );
        ensure!(
            again[service]["metadata"]["generation"] == settled[service]["metadata"]["generation"],
            "approve: a further helm upgrade leaves the generation of {service} as it was"
        );
        ensure!(
            hub.replica_set_count(HUB, service).await? == replica_sets[service],
            "approve: a further helm upgrade creates no ReplicaSet for {service}"
        );
    }
    narrator.say("a further helm upgrade changes nothing");
    Ok(helm_output)
}

/// Scenario 5: removing the quoting-service approval and upgrading again brings
/// back the chart's base tag; the other approval stays in force.
pub async fn roll_back(hub: &Hub, narrator: Narrator) -> Result<()> {
    narrator.step("Remove the quoting-service approval and run helm upgrade again");
    let document = format!(
        "approvals:\n{}{}",
        approval_entry(hub, "central-ledger", LEDGER_PATCH),
        policies(hub)
    );
    hub.set_approvals(&document).await?;
    let quoting_base = hub.image("mojaloop/quoting-service", "v10.4.0");
    hub.wait_for_pod_image(HUB, &quoting_base, &quoting_base)
        .await
        .context("roll back: the webhook drops the approval")?;
    hub.helm_upgrade(HUB, &[]).await.context("roll back: helm upgrade")?;
    let images = hub.deployment_images(HUB, "quoting-service").await?;
    ensure!(images == chart_images(hub, "quoting-service"), "roll back: quoting-service is back at the base tag: {images:?}");
    let pods = hub.newest_pod_images(HUB, "quoting-service").await?;
    ensure!(pods == images, "roll back: the new Pods of quoting-service run the base tag: {pods:?}");
    let ledger = hub.deployment_images(HUB, "central-ledger").await?;
    let patched = patched_image(hub, "central-ledger", LEDGER_PATCH);
    ensure!(ledger.values().all(|image| *image == patched), "roll back: central-ledger keeps its approved patch: {ledger:?}");
    narrator.show_images(&format!("{HUB}/quoting-service after the rollback:"), &images);
    Ok(())
}

/// Returns the hub's Deployments in `namespace` by name.
async fn deployments(hub: &Hub, namespace: &str) -> Result<BTreeMap<&'static str, Value>> {
    let mut found = BTreeMap::new();
    for service in SERVICES {
        found.insert(service, hub.deployment(namespace, service).await?);
    }
    Ok(found)
}
