//! Scans on the local test stack: a real kube-apiserver, Debian's docker-registry behind
//! the fault proxy, and the Slack receiver. The scanner runs as its own service account
//! with the RBAC of `manifests/scanner`.

mod common;

use common::{MOJALOOP, OTHER, delivered_text, row};
use scanner::report::Status;
use testsupport::fault_proxy::{Fault, LinkStyle, PathKind};

const QUOTING: &str = "mojaloop/quoting-service";

#[tokio::test]
async fn shared_repository_read_once() {
    let stack = common::start(false).await;
    // Lexical order puts v10.4.0.10-patch before v10.4.0.2-patch: out of version order.
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.2-patch", "v10.4.0.10-patch", "v10.5.0"]).await;
    let running = stack.image(QUOTING, "v10.4.0");
    stack.deployment(MOJALOOP, "quoting-service", &[("quoting-service", &running)], &[], &[]).await;
    stack.deployment(MOJALOOP, "quoting-service-handler", &[("handler", &running)], &[], &[]).await;
    stack.daemon_set(MOJALOOP, "quoting-agent", &running).await;
    stack.deployment(OTHER, "not-opted-in", &[("app", &running)], &[], &[]).await;
    stack.proxy.set_page_size(Some(2));
    stack.proxy.reset_counters();

    let report = stack.scan(&[]).await.unwrap();

    assert_eq!(stack.proxy.requests(PathKind::TagsList), 3, "one listing of three pages");
    assert_eq!(report.namespaces, [MOJALOOP]);
    assert_eq!(report.rows.len(), 3, "{:#?}", report.rows);
    let first = row(&report, "Deployment", "quoting-service", "quoting-service");
    assert_eq!(first.status, Status::PatchAvailable);
    assert_eq!(first.newest_patch.as_deref(), Some("v10.4.0.10-patch"));
    assert!(first.digest.as_deref().is_some_and(|digest| digest.starts_with("sha256:")));
    let delivered = stack.slack.delivered();
    assert_eq!(delivered.len(), 1);
    let text = delivered_text(&stack.slack);
    assert_eq!(text.matches("→ `v10.4.0.10-patch`").count(), 1, "{text}");
    assert!(text.contains("mojaloop/Deployment/quoting-service,"), "{text}");
    assert!(text.contains("mojaloop/Deployment/quoting-service-handler,"), "{text}");
    assert!(text.contains("mojaloop/DaemonSet/quoting-agent,"), "{text}");
    assert!(!text.contains("not-opted-in"), "{text}");
    assert!(text.contains("test-hub"), "{text}");
    let announced = stack.announced().await;
    assert_eq!(announced, [format!("{}/{QUOTING}:v10.4.0.10-patch", stack.proxy.address())]);
    let stored = stack.config_map_data("image-patch-report", "report.json").await.expect("report stored");
    assert!(stored.contains("\"patch available\""));
}

#[tokio::test]
async fn newer_patch_on_third_page_bare_link() {
    let stack = common::start(false).await;
    let repository = "mojaloop/account-lookup-service";
    // Snapshots sort before patches, so the only patch is on the third page of two tags.
    stack.seed(repository, &["v1.0.0", "v1.0.0-snapshot.1", "v1.0.0-snapshot.2", "v1.0.0-snapshot.3", "v1.0.0.1-patch"]).await;
    stack.deployment(MOJALOOP, "als", &[("als", &stack.image(repository, "v1.0.0"))], &[], &[]).await;
    stack.proxy.set_page_size(Some(2));
    stack.proxy.set_link_style(LinkStyle::Bare);
    stack.proxy.reset_counters();

    let report = stack.scan(&[]).await.unwrap();

    assert_eq!(stack.proxy.requests(PathKind::TagsList), 3);
    let als = row(&report, "Deployment", "als", "als");
    assert_eq!(als.status, Status::PatchAvailable);
    assert_eq!(als.newest_patch.as_deref(), Some("v1.0.0.1-patch"));
}

#[tokio::test]
async fn statuses_of_pinned_running_patch_and_latest() {
    let stack = common::start(false).await;
    let digests = stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "latest"]).await;
    let pinned = format!("{}/{QUOTING}@{}", stack.proxy.address(), digests[0]);
    stack.deployment(MOJALOOP, "pinned", &[("app", &pinned)], &[], &[]).await;
    stack
        .deployment(MOJALOOP, "patched", &[("app", &stack.image(QUOTING, "v10.4.0.1-patch"))], &[("init", &stack.image(QUOTING, "v10.4.0"))], &[])
        .await;
    stack.cron_job(MOJALOOP, "nightly", &stack.image(QUOTING, "latest")).await;
    stack.pod(MOJALOOP, "debug", &stack.image(QUOTING, "v10.4.0")).await;

    let report = stack.scan(&[]).await.unwrap();

    assert_eq!(row(&report, "Deployment", "pinned", "app").status, Status::PinnedByDigest);
    assert_eq!(row(&report, "Deployment", "patched", "app").status, Status::UpToDate);
    assert_eq!(row(&report, "Deployment", "patched", "init").status, Status::PatchAvailable);
    assert_eq!(row(&report, "CronJob", "nightly", "nightly").status, Status::NotPatchVersioned);
    assert_eq!(row(&report, "Pod", "debug", "debug").status, Status::PatchAvailable);
    // The Deployment's own pods, owned by a ReplicaSet, are not workloads of their own.
    assert!(report.rows.iter().all(|row| row.workload.kind.to_string() != "Pod" || row.workload.name == "debug"));
}

#[tokio::test]
async fn registry_faults_are_unknown_not_up_to_date() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.2-patch"]).await;
    stack.seed("mojaloop/central-ledger", &["v17.0.0", "v17.0.0.1-patch", "v17.0.0.2-patch", "v17.0.0.3-patch"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = format!("{closed}/mojaloop/ml-api-adapter:v14.0.0");
    stack.deployment(MOJALOOP, "adapter", &[("adapter", &down)], &[], &[]).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;
    stack.deployment(MOJALOOP, "ledger", &[("app", &stack.image("mojaloop/central-ledger", "v17.0.0"))], &[], &[]).await;
    stack.proxy.set_page_size(Some(2));
    // The first tag-list request gets a 429 with Retry-After 1 and is retried; a later
    // page is cut short on every attempt.
    stack.proxy.inject_for(PathKind::TagsList, testsupport::fault_proxy::Fault::too_many_requests(1), 1);

    let report = stack.scan(&[&format!("--insecure-registry={closed}")]).await.unwrap();
    let rate_limited_then_ok = report.rows.iter().filter(|row| row.status == Status::PatchAvailable).count();

    assert_eq!(row(&report, "Deployment", "adapter", "adapter").status, Status::RegistryError);
    assert_eq!(rate_limited_then_ok, 2, "{:#?}", report.rows);
    assert!(report.registry_errors.keys().any(|key| key.contains("ml-api-adapter")), "{:?}", report.registry_errors);

    stack.proxy.inject_for(PathKind::TagsList, testsupport::fault_proxy::Fault::TruncatedBody, 100);
    let truncated = stack.scan(&["--registry-attempts=2"]).await.unwrap();

    assert_eq!(row(&truncated, "Deployment", "quoting", "app").status, Status::RegistryError);
    assert_eq!(row(&truncated, "Deployment", "ledger", "app").status, Status::RegistryError);

    stack.proxy.clear_faults();
    stack
        .proxy
        .inject_for(PathKind::TagsList, testsupport::fault_proxy::Fault::Stall { duration: std::time::Duration::from_secs(5) }, 100);
    let stalled = stack.scan(&["--registry-attempts=1", "--registry-timeout=0.5"]).await.unwrap();

    assert_eq!(row(&stalled, "Deployment", "quoting", "app").status, Status::RegistryError);
    assert!(stalled.registry_errors.values().any(|error| error.contains("timed out")), "{:?}", stalled.registry_errors);
}

#[tokio::test]
async fn unresolved_digest_is_not_announced() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.set_approvals(&format!("policies:\n  - image: {}/mojaloop/*\n    mode: auto\n", stack.proxy.address())).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;
    // The tag list is served, but every manifest request fails on all attempts.
    stack.proxy.inject_for(PathKind::Manifest, Fault::ServerError { status: 503 }, 100);

    let outage = stack.scan(&[]).await.unwrap();

    let quoting = row(&outage, "Deployment", "quoting", "app");
    assert_eq!(quoting.status, Status::RegistryError);
    assert_eq!(quoting.digest, None);
    assert!(outage.registry_errors.keys().any(|key| key.ends_with("quoting-service:v10.4.0.1-patch")), "{:?}", outage.registry_errors);
    assert!(outage.auto_approved.is_empty());
    assert!(outage.notice.announced.is_empty());
    assert!(stack.slack.messages().is_empty());
    assert!(stack.announced().await.is_empty());
    let approvals = stack.config_map_data("image-patch-approvals", "approvals.yaml").await.unwrap();
    assert!(!approvals.contains("v10.4.0.1-patch"), "{approvals}");

    stack.proxy.clear_faults();
    let recovered = stack.scan(&[]).await.unwrap();

    assert_eq!(row(&recovered, "Deployment", "quoting", "app").status, Status::Approved);
    assert_eq!(recovered.auto_approved.len(), 1);
    assert_eq!(recovered.notice.announced.len(), 1);
    assert!(delivered_text(&stack.slack).contains("Digest: `sha256:"));
    assert_eq!(stack.announced().await.len(), 1);
}

#[tokio::test]
async fn slack_failure_then_recovery_announces_once() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;
    stack.slack.reply_next(testsupport::slack::Reply::ServerError, 1);
    stack.slack.reply_next(testsupport::slack::Reply::RateLimited { retry_after_seconds: 0 }, 1);

    let failed = stack.scan(&[]).await.unwrap();

    assert!(failed.notice.error.is_some());
    assert!(failed.notice.announced.is_empty());
    assert!(stack.announced().await.is_empty());
    assert!(stack.slack.delivered().is_empty());

    let recovered = stack.scan(&[]).await.unwrap();
    let again = stack.scan(&[]).await.unwrap();

    assert_eq!(recovered.notice.announced.len(), 1);
    assert!(again.notice.announced.is_empty());
    assert_eq!(stack.slack.delivered().len(), 1);
    assert_eq!(stack.announced().await.len(), 1);
}

#[tokio::test]
async fn racing_scans_announce_once() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.seed("mojaloop/central-ledger", &["v17.0.0", "v17.0.0.1-patch"]).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;
    stack.deployment(MOJALOOP, "ledger", &[("app", &stack.image("mojaloop/central-ledger", "v17.0.0"))], &[], &[]).await;

    let (first, second) = tokio::join!(stack.scan(&[]), stack.scan(&[]));

    let announced = first.unwrap().notice.announced.len() + second.unwrap().notice.announced.len();
    assert_eq!(announced, 2);
    let text = delivered_text(&stack.slack);
    assert_eq!(text.matches("→ `v10.4.0.1-patch`").count(), 1, "{text}");
    assert_eq!(text.matches("→ `v17.0.0.1-patch`").count(), 1, "{text}");
    assert_eq!(stack.announced().await.len(), 2);
}

#[tokio::test]
async fn broken_approval_entry_and_rollout() {
    let stack = common::start(true).await;
    let digests = stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.2-patch"]).await;
    let repository = format!("{}/{QUOTING}", stack.proxy.address());
    let document = format!(
        "approvals:\n  - image: {repository}\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    digest: {}\n  - image: {repository}-typo\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n    aproved: me\n",
        digests[2]
    );
    stack.set_approvals(&document).await;
    let running = stack.image(QUOTING, "v10.4.0");
    stack.deployment(MOJALOOP, "quoting", &[("app", &running)], &[("init", &running)], &[]).await;
    stack.deployment(OTHER, "outside", &[("app", &running)], &[], &[]).await;

    let report_only = stack.scan(&[]).await.unwrap();

    assert_eq!(report_only.approval_errors.len(), 1, "{:?}", report_only.approval_errors);
    assert!(report_only.approval_errors[0].contains("approvals[1]"));
    assert_eq!(row(&report_only, "Deployment", "quoting", "app").status, Status::Approved);

    let rolled = stack.scan(&["--rollout=patch"]).await.unwrap();

    assert_eq!(row(&rolled, "Deployment", "quoting", "app").status, Status::RolledOut);
    assert_eq!(row(&rolled, "Deployment", "quoting", "init").status, Status::RolledOut);
    let expected = format!("{repository}:v10.4.0.2-patch@{}", digests[2]);
    let images = stack.deployment_images(MOJALOOP, "quoting").await;
    assert_eq!(images["app"], expected);
    assert_eq!(images["init"], expected);
    assert_eq!(stack.deployment_images(OTHER, "outside").await["app"], running);
    assert!(delivered_text(&stack.slack).contains("mojaloop/Deployment/quoting patched"));
}

#[tokio::test]
async fn approval_with_wrong_digest_not_rolled_out() {
    let stack = common::start(true).await;
    let quoting_digests = stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.2-patch"]).await;
    let lookup = "mojaloop/account-lookup-service";
    let lookup_digests = stack.seed(lookup, &["v11.0.0", "v11.0.0.1-patch"]).await;
    let registry = stack.proxy.address();
    // The quoting approval pins the digest of v10.4.0.1-patch to the tag v10.4.0.2-patch.
    let document = format!(
        "approvals:\n  - image: {registry}/{QUOTING}\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n    digest: {}\n  - image: {registry}/{lookup}\n    version: v11.0.0\n    patch: v11.0.0.1-patch\n    digest: {}\n",
        quoting_digests[1], lookup_digests[1]
    );
    stack.set_approvals(&document).await;
    let quoting_running = stack.image(QUOTING, "v10.4.0");
    let lookup_running = stack.image(lookup, "v11.0.0");
    stack.deployment(MOJALOOP, "quoting", &[("app", &quoting_running)], &[], &[]).await;
    stack.deployment(MOJALOOP, "lookup", &[("app", &lookup_running)], &[], &[]).await;

    let report = stack.scan(&["--rollout=patch"]).await.unwrap();

    let quoting = row(&report, "Deployment", "quoting", "app");
    assert_eq!(quoting.status, Status::RegistryError);
    let detail = quoting.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("approvals[0]"), "{detail}");
    assert!(detail.contains(&quoting_digests[1]), "{detail}");
    assert!(detail.contains(&quoting_digests[2]), "{detail}");
    assert!(report.registry_errors.contains_key(&format!("{registry}/{QUOTING}:v10.4.0.2-patch")), "{:?}", report.registry_errors);
    assert_eq!(stack.deployment_images(MOJALOOP, "quoting").await["app"], quoting_running);
    assert!(report.rollouts.iter().all(|entry| entry.workload.name != "quoting"), "{:?}", report.rollouts);
    assert_eq!(row(&report, "Deployment", "lookup", "app").status, Status::RolledOut);
    let expected = format!("{registry}/{lookup}:v11.0.0.1-patch@{}", lookup_digests[1]);
    assert_eq!(stack.deployment_images(MOJALOOP, "lookup").await["app"], expected);
    let text = delivered_text(&stack.slack);
    assert!(text.contains("Approvals not rolled out"), "{text}");
    assert!(text.contains("approvals[0]"), "{text}");
}

#[tokio::test]
async fn approved_tag_missing_not_rolled_out() {
    let stack = common::start(true).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch", "v10.4.0.2-patch", "v10.4.0.3-patch"]).await;
    let lookup = "mojaloop/account-lookup-service";
    stack.seed(lookup, &["v11.0.0", "v11.0.0.1-patch"]).await;
    let registry = stack.proxy.address();
    // The quoting approval names a patch tag that the registry does not have.
    let document = format!(
        "approvals:\n  - image: {registry}/{QUOTING}\n    version: v10.4.0\n    patch: v10.4.0.9-patch\n  - image: {registry}/{lookup}\n    version: v11.0.0\n    patch: v11.0.0.1-patch\n"
    );
    stack.set_approvals(&document).await;
    let quoting_running = stack.image(QUOTING, "v10.4.0");
    stack.deployment(MOJALOOP, "quoting", &[("app", &quoting_running)], &[], &[]).await;
    stack.deployment(MOJALOOP, "lookup", &[("app", &stack.image(lookup, "v11.0.0"))], &[], &[]).await;
    stack.proxy.reset_counters();

    let report = stack.scan(&["--rollout=patch"]).await.unwrap();

    assert_eq!(stack.deployment_images(MOJALOOP, "quoting").await["app"], quoting_running);
    assert!(report.rollouts.iter().all(|entry| entry.workload.name != "quoting"), "{:?}", report.rollouts);
    let quoting = row(&report, "Deployment", "quoting", "app");
    assert_eq!(quoting.status, Status::RegistryError);
    let detail = quoting.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("approvals[0]"), "{detail}");
    assert!(detail.contains("no tag v10.4.0.9-patch"), "{detail}");
    assert!(detail.contains("Correct the approval's patch tag or push the image"), "{detail}");
    assert!(report.registry_errors.contains_key(&format!("{registry}/{QUOTING}:v10.4.0.9-patch")), "{:?}", report.registry_errors);
    assert_eq!(row(&report, "Deployment", "lookup", "app").status, Status::RolledOut);
    assert_eq!(stack.deployment_images(MOJALOOP, "lookup").await["app"], stack.image(lookup, "v11.0.0.1-patch"));
    // The check reuses the scan's tag lists: one list and one manifest (the newest patch's digest) per repository.
    assert_eq!(stack.proxy.requests(PathKind::TagsList), 2);
    assert_eq!(stack.proxy.requests(PathKind::Manifest), 2);
    let text = delivered_text(&stack.slack);
    assert!(text.contains("Approvals not rolled out"), "{text}");
    assert!(text.contains("approvals[0]"), "{text}");
    let table = stack.config_map_data("image-patch-report", "report.txt").await.unwrap();
    assert!(table.contains("no tag v10.4.0.9-patch"), "{table}");
}

#[tokio::test]
async fn tag_and_digest_image_rolled_out() {
    let stack = common::start(true).await;
    let quoting_digests = stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    let lookup = "mojaloop/account-lookup-service";
    let lookup_digests = stack.seed(lookup, &["v11.0.0", "v11.0.0.1-patch"]).await;
    let registry = stack.proxy.address();
    // The quoting approval has no digest, the lookup approval pins one.
    let document = format!(
        "approvals:\n  - image: {registry}/{QUOTING}\n    version: v10.4.0\n    patch: v10.4.0.1-patch\n  - image: {registry}/{lookup}\n    version: v11.0.0\n    patch: v11.0.0.1-patch\n    digest: {}\n",
        lookup_digests[1]
    );
    stack.set_approvals(&document).await;
    let quoting_running = format!("{}@{}", stack.image(QUOTING, "v10.4.0"), quoting_digests[0]);
    let lookup_running = format!("{}@{}", stack.image(lookup, "v11.0.0"), lookup_digests[0]);
    let digest_only = format!("{registry}/{QUOTING}@{}", quoting_digests[0]);
    stack.deployment(MOJALOOP, "quoting", &[("app", &quoting_running), ("pinned", &digest_only)], &[], &[]).await;
    stack.deployment(MOJALOOP, "lookup", &[("app", &lookup_running)], &[], &[]).await;

    let report = stack.scan(&["--rollout=patch"]).await.unwrap();

    let quoting = stack.deployment_images(MOJALOOP, "quoting").await;
    assert_eq!(quoting["app"], stack.image(QUOTING, "v10.4.0.1-patch"));
    assert_eq!(quoting["pinned"], digest_only);
    let expected_lookup = format!("{}@{}", stack.image(lookup, "v11.0.0.1-patch"), lookup_digests[1]);
    assert_eq!(stack.deployment_images(MOJALOOP, "lookup").await["app"], expected_lookup);
    assert_eq!(row(&report, "Deployment", "quoting", "app").status, Status::RolledOut);
    assert_eq!(row(&report, "Deployment", "quoting", "pinned").status, Status::PinnedByDigest);
    assert_eq!(row(&report, "Deployment", "lookup", "app").status, Status::RolledOut);
    let changes: Vec<&String> = report.rollouts.iter().flat_map(|entry| &entry.changes).collect();
    assert!(changes.contains(&&format!("app: {quoting_running} → {}", stack.image(QUOTING, "v10.4.0.1-patch"))), "{changes:?}");
    assert!(report.registry_errors.is_empty(), "{:?}", report.registry_errors);
}

#[tokio::test]
async fn auto_policy_approves_and_announces() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.set_approvals(&format!("policies:\n  - image: {}/mojaloop/*\n    mode: auto\n", stack.proxy.address())).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;

    let report = stack.scan(&[]).await.unwrap();

    assert_eq!(report.auto_approved.len(), 1);
    assert_eq!(row(&report, "Deployment", "quoting", "app").status, Status::Approved);
    let document = stack.config_map_data("image-patch-approvals", "approvals.yaml").await.unwrap();
    assert!(document.contains("patch: v10.4.0.1-patch"), "{document}");
    assert!(document.contains("approvedBy: image-patch-scanner (policy mode auto for"), "{document}");
    assert!(delivered_text(&stack.slack).contains("Approved automatically"));
}

#[tokio::test]
async fn basic_auth_registry_with_pull_secret() {
    let stack = common::start(false).await;
    let private = testsupport::Registry::start_with_basic_auth("hub", "hub-password").await.unwrap();
    testsupport::seed::push_image(private.address(), QUOTING, &["v10.4.0", "v10.4.0.1-patch"], &private.auth()).await.unwrap();
    stack.pull_secret(MOJALOOP, "hub-pull", private.address(), "hub", "hub-password").await;
    let image = format!("{}/{QUOTING}:v10.4.0", private.address());
    stack.deployment(MOJALOOP, "with-secret", &[("app", &image)], &[], &["hub-pull"]).await;
    stack.deployment(MOJALOOP, "without-secret", &[("app", &image)], &[], &[]).await;

    let report = stack.scan(&[&format!("--insecure-registry={}", private.address())]).await.unwrap();

    // One tag list per repository: the credentials of the workload that has them serve both.
    assert_eq!(row(&report, "Deployment", "with-secret", "app").status, Status::PatchAvailable);
    assert_eq!(row(&report, "Deployment", "without-secret", "app").status, Status::PatchAvailable);
    let json = report.to_json();
    assert!(!json.contains("hub-password"));
}

#[tokio::test]
async fn pull_secret_from_service_account() {
    let stack = common::start(false).await;
    let private = testsupport::Registry::start_with_basic_auth("hub", "hub-password").await.unwrap();
    let ledger = "mojaloop/central-ledger";
    testsupport::seed::push_image(private.address(), QUOTING, &["v10.4.0", "v10.4.0.1-patch"], &private.auth()).await.unwrap();
    testsupport::seed::push_image(private.address(), ledger, &["v17.0.0", "v17.0.0.1-patch"], &private.auth()).await.unwrap();
    stack.pull_secret(MOJALOOP, "hub-pull", private.address(), "hub", "hub-password").await;
    stack.service_account(MOJALOOP, "hub-puller", &["hub-pull"]).await;
    stack.service_account(MOJALOOP, "default", &["hub-pull"]).await;
    stack.service_account(MOJALOOP, "no-secrets", &[]).await;
    // Each workload has its own repository, so no workload's credentials serve another.
    let quoting = format!("{}/{QUOTING}:v10.4.0", private.address());
    let ledger_image = format!("{}/{ledger}:v17.0.0", private.address());
    let adapter = format!("{}/mojaloop/ml-api-adapter:v14.0.0", private.address());
    stack.deployment_with_account(MOJALOOP, "named-account", &quoting, "hub-puller").await;
    stack.deployment(MOJALOOP, "default-account", &[("app", &ledger_image)], &[], &[]).await;
    stack.deployment_with_account(MOJALOOP, "anonymous", &adapter, "no-secrets").await;

    let report = stack.scan(&[&format!("--insecure-registry={}", private.address())]).await.unwrap();

    assert_eq!(row(&report, "Deployment", "named-account", "named-account").status, Status::PatchAvailable);
    assert_eq!(row(&report, "Deployment", "default-account", "app").status, Status::PatchAvailable);
    assert_eq!(row(&report, "Deployment", "anonymous", "anonymous").status, Status::RegistryError);
    let denied = report.registry_errors.iter().find(|(key, _)| key.contains("ml-api-adapter")).map(|(_, error)| error.as_str());
    assert!(denied.is_some_and(|error| error.contains("access denied")), "{:?}", report.registry_errors);
    assert!(!report.to_json().contains("hub-password"));
}

#[tokio::test]
async fn missing_slack_secret_fails_the_scan() {
    let stack = common::start(false).await;

    let missing_secret = stack.scan(&["--slack-secret=absent"]).await.unwrap_err();

    assert!(matches!(missing_secret, scanner::scan::ScanError::Config(_)), "{missing_secret}");
}

#[tokio::test]
async fn unparsable_approvals_use_last_good() {
    let stack = common::start(false).await;
    let ledger = "mojaloop/central-ledger";
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.seed(ledger, &["v17.0.0", "v17.0.0.1-patch"]).await;
    let address = stack.proxy.address().to_string();
    let good = format!(
        "approvals:\n  - image: {address}/{QUOTING}\n    version: v10.4.0\n    patch: v10.4.0.1-patch\npolicies:\n  - image: {address}/{ledger}\n    mode: auto\n"
    );
    stack.set_approvals(&good).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;

    let first = stack.scan(&[]).await.unwrap();

    assert_eq!(row(&first, "Deployment", "quoting", "app").status, Status::Approved);
    assert_eq!(first.configuration_error, None);
    assert!(scanner::scan::check_configuration(&first).is_ok());
    let state = stack.config_map_data("image-patch-state", "state.json").await.unwrap();
    assert!(state.contains("lastGoodApprovals"), "{state}");

    let garbage = "approvals: [unclosed";
    stack.set_approvals(garbage).await;
    stack.deployment(MOJALOOP, "ledger", &[("app", &stack.image(ledger, "v17.0.0"))], &[], &[]).await;

    let broken = stack.scan(&[]).await.unwrap();

    let error = broken.configuration_error.clone().expect("the report carries the configuration error");
    assert!(error.contains("image-patch-system/image-patch-approvals, key approvals.yaml"), "{error}");
    assert!(error.contains("line "), "{error}");
    assert!(error.contains("used the last good approvals, recorded at"), "{error}");
    assert_eq!(row(&broken, "Deployment", "quoting", "app").status, Status::Approved);
    assert_eq!(row(&broken, "Deployment", "ledger", "app").status, Status::PatchAvailable);
    assert!(broken.auto_approved.is_empty(), "{:?}", broken.auto_approved);
    assert_eq!(broken.notice.announced.len(), 1, "{:?}", broken.notice);
    assert!(broken.notice.announced[0].repository.ends_with(ledger));
    let last_notice = stack.slack.delivered().last().unwrap().json["text"].as_str().unwrap().to_string();
    assert!(last_notice.contains("Configuration error: ConfigMap image-patch-system/image-patch-approvals cannot be parsed"), "{last_notice}");
    assert!(last_notice.contains("v17.0.0.1-patch"), "{last_notice}");
    let stored = stack.config_map_data("image-patch-report", "report.json").await.unwrap();
    assert!(stored.contains("\"configurationError\""), "{stored}");
    let table = stack.config_map_data("image-patch-report", "report.txt").await.unwrap();
    assert!(table.contains("configuration error: ConfigMap image-patch-system/image-patch-approvals"), "{table}");
    assert_eq!(stack.config_map_data("image-patch-approvals", "approvals.yaml").await.as_deref(), Some(garbage));
    let exit = scanner::scan::check_configuration(&broken).unwrap_err();
    assert!(matches!(exit, scanner::scan::ScanError::Config(_)), "{exit}");
    let state = stack.config_map_data("image-patch-state", "state.json").await.unwrap();
    assert!(state.contains("v10.4.0.1-patch"), "the last good document stays recorded: {state}");
}

#[tokio::test]
async fn unparsable_approvals_without_last_good() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.set_approvals("approvals: [unclosed").await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;

    let report = stack.scan(&[]).await.unwrap();

    let error = report.configuration_error.clone().expect("the report carries the configuration error");
    assert!(error.contains("used no approvals, because no scan has recorded a document that parsed"), "{error}");
    assert_eq!(row(&report, "Deployment", "quoting", "app").status, Status::PatchAvailable);
    assert_eq!(report.notice.announced.len(), 1);
    assert!(scanner::scan::check_configuration(&report).is_err());
    let state = stack.config_map_data("image-patch-state", "state.json").await.unwrap();
    assert!(!state.contains("lastGoodApprovals"), "{state}");
}

#[tokio::test]
async fn invalid_slack_url_is_configuration_error() {
    let stack = common::start(false).await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(stack.admin.clone(), common::SYSTEM);

    for url in ["not a url secret-token", "ftp://hooks.example/secret-token"] {
        let patch = serde_json::json!({"stringData": {"webhook-url": url}});
        secrets.patch("image-patch-slack", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();

        let error = stack.scan(&[]).await.unwrap_err();

        let message = error.to_string();
        assert!(matches!(error, scanner::scan::ScanError::Config(_)), "{url}: {message}");
        assert!(message.contains("image-patch-system/image-patch-slack"), "{url}: {message}");
        assert!(message.contains("webhook-url"), "{url}: {message}");
        assert!(message.contains("https://"), "{url}: {message}");
        assert!(!message.contains("secret-token"), "{url}: {message}");
    }
    assert!(delivered_text(&stack.slack).is_empty());
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;

    let report = stack.scan(&["--dry-run", "--slack-secret=absent"]).await.unwrap();

    assert_eq!(report.notice.messages_sent, 1);
    assert!(stack.slack.messages().is_empty());
    assert!(stack.config_map_data("image-patch-state", "state.json").await.is_none());
    assert!(stack.config_map_data("image-patch-report", "report.json").await.is_none());
}

#[tokio::test]
async fn dry_run_reports_planned_rollout() {
    let stack = common::start(true).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    let repository = format!("{}/{QUOTING}", stack.proxy.address());
    stack.set_approvals(&format!("approvals:\n  - image: {repository}\n    version: v10.4.0\n    patch: v10.4.0.1-patch\n")).await;
    let running = stack.image(QUOTING, "v10.4.0");
    stack.deployment(MOJALOOP, "quoting", &[("app", &running)], &[], &[]).await;

    let report = stack.scan(&["--dry-run", "--rollout=patch", "--slack-secret=absent"]).await.unwrap();

    let quoting = row(&report, "Deployment", "quoting", "app");
    assert_eq!(quoting.status, Status::WouldRollOut);
    assert_eq!(quoting.detail.as_deref(), Some(format!("would roll out: {running} → {repository}:v10.4.0.1-patch").as_str()));
    assert_eq!(report.rollouts.len(), 1);
    assert!(report.rollouts[0].dry_run);
    assert_eq!(report.rollouts[0].error, None);
    assert_eq!(report.rollouts[0].changes, [format!("app: {running} → {repository}:v10.4.0.1-patch")]);
    assert!(report.to_table().contains("mojaloop/Deployment/quoting: would roll out (dry run): app: "));
    // The scanner's account may patch workloads here, so an unchanged image shows that nothing was written.
    assert_eq!(stack.deployment_images(MOJALOOP, "quoting").await["app"], running);
    assert!(stack.config_map_data("image-patch-state", "state.json").await.is_none());
    assert!(stack.config_map_data("image-patch-report", "report.json").await.is_none());
}

#[tokio::test]
async fn rollout_skips_audit_and_controller_namespaces() {
    let stack = common::start(true).await;
    let payments = "payments";
    let labels = [("patches.mojaloop.io/enabled", "true"), ("patches.mojaloop.io/mode", "audit")];
    stack.cluster.create_namespace(payments, &labels).await.unwrap();
    // A controller namespace labelled by mistake: the webhook never patches it, whatever its labels.
    let enabled = serde_json::json!({"metadata": {"labels": {"patches.mojaloop.io/enabled": "true"}}});
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(stack.admin.clone());
    namespaces.patch(common::SYSTEM, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&enabled)).await.unwrap();
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    let repository = format!("{}/{QUOTING}", stack.proxy.address());
    stack.set_approvals(&format!("approvals:\n  - image: {repository}\n    version: v10.4.0\n    patch: v10.4.0.1-patch\n")).await;
    let running = stack.image(QUOTING, "v10.4.0");
    stack.deployment(MOJALOOP, "quoting", &[("app", &running)], &[], &[]).await;
    stack.deployment(payments, "audited", &[("app", &running)], &[], &[]).await;
    stack.deployment(common::SYSTEM, "own", &[("app", &running)], &[], &[]).await;

    let report = stack.scan(&["--rollout=patch"]).await.unwrap();

    assert_eq!(report.namespaces, [common::SYSTEM, MOJALOOP, payments]);
    assert_eq!(stack.deployment_images(MOJALOOP, "quoting").await["app"], format!("{repository}:v10.4.0.1-patch"));
    assert_eq!(stack.deployment_images(payments, "audited").await["app"], running);
    assert_eq!(stack.deployment_images(common::SYSTEM, "own").await["app"], running);
    assert_eq!(row(&report, "Deployment", "quoting", "app").status, Status::RolledOut);
    assert_eq!(row(&report, "Deployment", "audited", "app").status, Status::Approved);
    let rolled_out: Vec<&str> = report.rollouts.iter().map(|entry| entry.workload.name.as_str()).collect();
    assert_eq!(rolled_out, ["quoting"]);
    let skipped: Vec<String> = report.rollouts_skipped.iter().map(|skipped| format!("{} {:?}", skipped.workload, skipped.reason)).collect();
    assert_eq!(skipped, [format!("{}/Deployment/own Protected", common::SYSTEM), "payments/Deployment/audited Audit".to_string()]);
    let table = stack.config_map_data("image-patch-report", "report.txt").await.unwrap();
    assert!(table.contains("rollout skipped: payments/Deployment/audited: not rolled out, because namespace payments is in audit mode"), "{table}");
}

/// Returns the `state.json` of the state ConfigMap, or an empty text when there is none.
async fn state_text(stack: &common::Stack) -> String {
    stack.config_map_data("image-patch-state", "state.json").await.unwrap_or_default()
}

#[tokio::test]
async fn unparsable_approvals_notified_once() {
    let stack = common::start(false).await;
    let garbage = "approvals: [unclosed";
    stack.set_approvals(garbage).await;

    let first = stack.scan(&[]).await.unwrap();
    let second = stack.scan(&[]).await.unwrap();

    assert!(scanner::scan::check_configuration(&first).is_err(), "the binary still exits with status 2");
    assert!(scanner::scan::check_configuration(&second).is_err());
    assert_eq!(first.notice.messages_sent, 1, "{:?}", first.notice);
    assert_eq!(second.notice.messages_sent, 0, "{:?}", second.notice);
    assert_eq!(stack.slack.delivered().len(), 1);
    let text = delivered_text(&stack.slack);
    assert!(text.contains("Cannot be parsed: ConfigMap image-patch-system/image-patch-approvals, key approvals.yaml"), "{text}");
    assert!(text.contains("line 1 column"), "{text}");
    assert!(text.contains("0 new patch(es)"), "{text}");
    assert!(state_text(&stack).await.contains("notifiedConfigurationErrors"));

    stack.set_approvals("approvals: []\n").await;
    let fixed = stack.scan(&[]).await.unwrap();

    assert!(scanner::scan::check_configuration(&fixed).is_ok());
    assert_eq!(stack.slack.delivered().len(), 1, "a fixed document sends nothing");
    assert!(!state_text(&stack).await.contains("notifiedConfigurationErrors"), "the fix clears the record");

    stack.set_approvals(garbage).await;
    stack.scan(&[]).await.unwrap();

    assert_eq!(stack.slack.delivered().len(), 2, "the same error after a fix is notified again");
}

#[tokio::test]
async fn invalid_approval_entries_notified() {
    let stack = common::start(false).await;
    let registry = stack.proxy.address().to_string();
    let misspelled = format!("  - image: {registry}/{QUOTING}\n    version: v10.4.0\n    patch: v10.4.0.2-pach\n");
    let nowhere = format!("  - image: {registry}/mojaloop/central-ledger\n    version: v17.0.0\n    patch: v17.0.0.1-patch\n    namespaces: []\n");
    stack.set_approvals(&format!("approvals:\n{misspelled}{nowhere}")).await;

    let first = stack.scan(&[]).await.unwrap();
    let second = stack.scan(&[]).await.unwrap();

    assert!(scanner::scan::check_configuration(&first).is_ok(), "invalid entries keep exit status 0");
    assert_eq!(first.approval_errors.len(), 2, "{:?}", first.approval_errors);
    assert_eq!(first.notice.messages_sent, 1, "{:?}", first.notice);
    assert_eq!(second.notice.messages_sent, 0, "{:?}", second.notice);
    assert_eq!(stack.slack.delivered().len(), 1);
    let text = delivered_text(&stack.slack);
    for error in &first.approval_errors {
        assert!(text.contains(&format!("• {error}")), "the notice lists {error:?} as the report does:\n{text}");
    }
    assert!(text.contains("approvals[0] (line 2)"), "{text}");
    assert!(text.contains("v10.4.0.2-pach"), "{text}");
    assert!(text.contains("approvals[1] (line 5): namespaces is empty"), "{text}");

    // Fixing one entry changes the set of errors, which is then notified again.
    let fixed = misspelled.replace("v10.4.0.2-pach", "v10.4.0.2-patch");
    stack.set_approvals(&format!("approvals:\n{fixed}{nowhere}")).await;
    let changed = stack.scan(&[]).await.unwrap();

    assert_eq!(changed.approval_errors.len(), 1, "{:?}", changed.approval_errors);
    let delivered = stack.slack.delivered();
    assert_eq!(delivered.len(), 2);
    let last = delivered.last().unwrap().text().unwrap_or_default().to_string();
    assert!(last.contains("approvals[1] (line 5): namespaces is empty"), "{last}");
    assert!(!last.contains("v10.4.0.2-pach"), "{last}");
}

#[tokio::test]
async fn slack_outage_then_errors_notified() {
    let stack = common::start(false).await;
    stack.set_approvals("approvals: [unclosed").await;
    // The test options allow two Slack attempts, so both fail.
    stack.slack.reply_next(testsupport::slack::Reply::ServerError, 2);

    let outage = stack.scan(&[]).await.unwrap();

    assert!(outage.notice.error.is_some(), "{:?}", outage.notice);
    assert!(stack.slack.delivered().is_empty());
    assert_eq!(stack.slack.messages().len(), 2, "both attempts reached the receiver");
    let state = state_text(&stack).await;
    assert!(!state.contains("notifiedConfigurationErrors"), "an outage records nothing: {state}");
    assert!(!state.contains("configurationErrors"), "the claim is released: {state}");

    let recovered = stack.scan(&[]).await.unwrap();
    let again = stack.scan(&[]).await.unwrap();

    assert_eq!(recovered.notice.messages_sent, 1, "{:?}", recovered.notice);
    assert_eq!(again.notice.messages_sent, 0, "{:?}", again.notice);
    assert_eq!(stack.slack.delivered().len(), 1);
    assert!(delivered_text(&stack.slack).contains("Cannot be parsed: ConfigMap image-patch-system/image-patch-approvals"));
}

#[tokio::test]
async fn missing_namespace_reported() {
    let stack = common::start(false).await;

    let report = stack.scan(&["--namespace=absent,mojaloop"]).await.unwrap();

    assert_eq!(report.namespaces, [MOJALOOP]);
    let error = report.discovery_errors.get("absent").map(String::as_str).unwrap_or_default();
    assert!(error.contains("namespace does not exist"), "{:?}", report.discovery_errors);
    assert!(error.contains("--namespace"), "{error}");
    assert!(report.to_table().contains("discovery error: namespace absent: namespace does not exist"));
}

/// Returns the delivered Slack messages that list approvals that were not rolled out.
fn unconfirmed_messages(slack: &testsupport::slack::SlackReceiver) -> Vec<String> {
    slack
        .delivered()
        .iter()
        .map(|message| message.text().unwrap_or_default().to_string())
        .filter(|text| text.contains("Approvals not rolled out"))
        .collect()
}

/// Returns an approvals document that approves the quoting service's `patch` of release line v10.4.0.
fn quoting_approval(registry: &str, patch: &str) -> String {
    format!("approvals:\n  - image: {registry}/{QUOTING}\n    version: v10.4.0\n    patch: {patch}\n")
}

#[tokio::test]
async fn missing_approved_tag_notified_once() {
    let stack = common::start(true).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    let registry = stack.proxy.address().to_string();
    let missing = quoting_approval(&registry, "v10.4.0.9-patch");
    stack.set_approvals(&missing).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;

    let first = stack.scan(&[]).await.unwrap();
    let second = stack.scan(&["--rollout=patch"]).await.unwrap();
    let third = stack.scan(&["--rollout=off"]).await.unwrap();

    assert_eq!(unconfirmed_messages(&stack.slack).len(), 1, "{:?}", unconfirmed_messages(&stack.slack));
    assert!(unconfirmed_messages(&stack.slack)[0].contains("no tag v10.4.0.9-patch"));
    assert_eq!(first.notice.messages_sent, 1, "{:?}", first.notice);
    assert_eq!(second.notice.messages_sent, 0, "{:?}", second.notice);
    assert_eq!(third.notice.messages_sent, 0, "{:?}", third.notice);
    for report in [&first, &second, &third] {
        let quoting = row(report, "Deployment", "quoting", "app");
        assert_eq!(quoting.status, Status::RegistryError, "the report lists it on every scan");
        assert!(quoting.detail.as_deref().unwrap_or_default().contains("no tag v10.4.0.9-patch"), "{:?}", quoting.detail);
    }
    let table = stack.config_map_data("image-patch-report", "report.txt").await.unwrap();
    assert!(table.contains("no tag v10.4.0.9-patch"), "{table}");
    assert!(state_text(&stack).await.contains("notifiedUnconfirmedApprovals"));

    stack.set_approvals(&quoting_approval(&registry, "v10.4.0.1-patch")).await;
    let fixed = stack.scan(&[]).await.unwrap();

    assert_eq!(fixed.notice.messages_sent, 0, "{:?}", fixed.notice);
    assert_eq!(row(&fixed, "Deployment", "quoting", "app").status, Status::Approved);
    assert!(!state_text(&stack).await.contains("notifiedUnconfirmedApprovals"), "the fix clears the record");

    stack.set_approvals(&missing).await;
    let broken_again = stack.scan(&[]).await.unwrap();

    assert_eq!(broken_again.notice.messages_sent, 1, "{:?}", broken_again.notice);
    assert_eq!(unconfirmed_messages(&stack.slack).len(), 2, "the same approval after a fix is notified again");
}

#[tokio::test]
async fn slack_outage_then_unconfirmed_notified() {
    let stack = common::start(false).await;
    stack.seed(QUOTING, &["v10.4.0", "v10.4.0.1-patch"]).await;
    stack.set_approvals(&quoting_approval(stack.proxy.address(), "v10.4.0.9-patch")).await;
    stack.deployment(MOJALOOP, "quoting", &[("app", &stack.image(QUOTING, "v10.4.0"))], &[], &[]).await;
    // The test options allow two Slack attempts, so both fail.
    stack.slack.reply_next(testsupport::slack::Reply::ServerError, 2);

    let outage = stack.scan(&[]).await.unwrap();

    assert!(outage.notice.error.is_some(), "{:?}", outage.notice);
    assert!(stack.slack.delivered().is_empty());
    let state = state_text(&stack).await;
    assert!(!state.contains("notifiedUnconfirmedApprovals"), "an outage records nothing: {state}");
    assert!(!state.contains("unconfirmedApprovals"), "the claim is released: {state}");

    let recovered = stack.scan(&[]).await.unwrap();
    let again = stack.scan(&[]).await.unwrap();

    assert_eq!(recovered.notice.messages_sent, 1, "{:?}", recovered.notice);
    assert_eq!(again.notice.messages_sent, 0, "{:?}", again.notice);
    assert_eq!(unconfirmed_messages(&stack.slack).len(), 1);
    assert!(unconfirmed_messages(&stack.slack)[0].contains("approvals[0]"));
}
