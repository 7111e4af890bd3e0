//! The admission routes in process: every handled kind, the cases where nothing may change,
//! malformed input, audit mode, and coexistence with a registry-mirror webhook.

mod common;

use axum::http::StatusCode;
use common::*;
use rstest::rstest;
use serde_json::{Value, json};
use webhook::admission::PREVIOUS_IMAGES_ANNOTATION;
use webhook::routes::{self, AppState, Limits};

const BASE: &str = "mojaloop/quoting-service:v10.4.0";

fn previous_images(metadata: &Value) -> Value {
    let recorded = metadata["annotations"][PREVIOUS_IMAGES_ANNOTATION]
        .as_str()
        .expect("previous-images annotation");
    serde_json::from_str(recorded).unwrap()
}

#[rstest]
#[case("pod")]
#[case("deployment")]
#[case("statefulset")]
#[case("daemonset")]
#[case("replicaset")]
#[case("job")]
#[case("cronjob")]
#[tokio::test]
async fn each_kind_gets_patch(#[case] kind: &str) {
    let router = router();
    let review = review(kind);

    let response = mutate(&router, &review).await;
    let patched = apply(&review, &response);

    assert_eq!(response["uid"], review["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    assert_eq!(image_of(&patched, kind, "containers", "app"), PATCHED);
    assert_eq!(
        image_of(&patched, kind, "containers", "log-shipper"),
        "busybox:1.36"
    );
    assert_eq!(
        image_of(&patched, kind, "initContainers", "wait-for-db"),
        "mojaloop/quoting-service:v10.3.0"
    );
    assert_eq!(previous_images(&patched["metadata"]), json!({"app": BASE}));
    let original_annotations = review["request"]["object"]["metadata"]["annotations"].as_object();
    for (key, value) in original_annotations.into_iter().flatten() {
        assert_eq!(
            &patched["metadata"]["annotations"][key], value,
            "annotation {key}"
        );
    }
    if kind != "pod" {
        let template_metadata = patched
            .pointer(spec_pointer(kind).trim_end_matches("/spec"))
            .unwrap()["metadata"]
            .clone();
        assert_eq!(previous_images(&template_metadata), json!({"app": BASE}));
    }
    assert_eq!(
        warnings(&response),
        [format!(
            "image-patch: container \"app\" image {BASE} rewritten to {PATCHED} (approvals[0])"
        )]
    );
}

#[rstest]
#[case("pod")]
#[case("deployment")]
#[case("cronjob")]
#[tokio::test]
async fn patch_changes_only_image_fields(#[case] kind: &str) {
    let router = router();
    let review = review(kind);

    let response = mutate(&router, &review).await;
    let patch = serde_json::to_value(patch_of(&response)).unwrap();

    for operation in patch.as_array().unwrap() {
        let path = operation["path"].as_str().unwrap();
        let is_image = path.ends_with("/image") && operation["op"] == "replace";
        let is_annotation = path.contains("metadata") && operation["op"] == "add";
        assert!(
            is_image || is_annotation,
            "unexpected operation {operation}"
        );
    }
}

#[rstest]
#[case("pod")]
#[case("deployment")]
#[case("statefulset")]
#[case("daemonset")]
#[case("replicaset")]
#[case("job")]
#[case("cronjob")]
#[tokio::test]
async fn second_pass_gives_no_patch(#[case] kind: &str) {
    let router = router();
    let mut review = review(kind);
    let response = mutate(&router, &review).await;
    review["request"]["object"] = apply(&review, &response);

    let second = mutate(&router, &review).await;

    assert!(second.get("patch").is_none(), "second patch: {second}");
    assert!(warnings(&second).is_empty());
}

#[tokio::test]
async fn pod_from_rewritten_template_gets_no_patch() {
    let router = router();
    let deployment = review("deployment");
    let patched = apply(&deployment, &mutate(&router, &deployment).await);
    let mut pod = review("pod");
    pod["request"]["object"]["metadata"]["annotations"] =
        patched["spec"]["template"]["metadata"]["annotations"].clone();
    pod["request"]["object"]["spec"]["initContainers"] =
        patched["spec"]["template"]["spec"]["initContainers"].clone();
    pod["request"]["object"]["spec"]["containers"] =
        patched["spec"]["template"]["spec"]["containers"].clone();

    let response = mutate(&router, &pod).await;

    assert!(response.get("patch").is_none(), "pod patch: {response}");
    let pod_annotations = &pod["request"]["object"]["metadata"];
    assert_eq!(previous_images(pod_annotations), json!({"app": BASE}));
}

#[rstest]
#[case::pinned_by_digest(
    "mojaloop/quoting-service@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)]
#[case::already_patched("mojaloop/quoting-service:v10.4.0.2-patch")]
#[case::newer_patch_than_approved("mojaloop/quoting-service:v10.4.0.3-patch")]
#[case::newer_release_line("mojaloop/quoting-service:v10.4.1")]
#[case::snapshot("mojaloop/quoting-service:v10.4.0-snapshot.3")]
#[case::latest("mojaloop/quoting-service:latest")]
#[case::no_tag("mojaloop/quoting-service")]
#[case::other_registry("ghcr.io/mojaloop/quoting-service:v10.4.0")]
#[case::invalid_reference("Mojaloop/Quoting-Service:v10.4.0")]
#[tokio::test]
async fn image_left_unchanged(#[case] image: &str) {
    let router = router();
    let mut review = review("pod");
    set_image(&mut review, "pod", "containers", "app", image);

    let response = mutate(&router, &review).await;

    assert_eq!(response["allowed"], true);
    assert!(
        response.get("patch").is_none(),
        "patch for {image}: {response}"
    );
    assert!(warnings(&response).is_empty());
}

#[tokio::test]
async fn namespace_outside_scope_unchanged() {
    let router = router();
    let mut review = review("deployment");
    set_image(
        &mut review,
        "deployment",
        "containers",
        "app",
        "mojaloop/central-ledger:v17.0.0",
    );
    review["request"]["namespace"] = json!("payments");
    review["request"]["object"]["metadata"]["namespace"] = json!("payments");

    let response = mutate(&router, &review).await;

    assert!(response.get("patch").is_none(), "patch: {response}");
}

#[rstest]
#[case::kube_system("kube-system")]
#[case::own_namespace("image-patch-system")]
#[tokio::test]
async fn protected_namespace_never_patched(#[case] namespace: &str) {
    let router = router();
    let mut review = review("deployment");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);

    let response = mutate(&router, &review).await;

    assert!(response.get("patch").is_none(), "patch: {response}");
    assert_eq!(response["allowed"], json!(true));
    assert_eq!(
        warnings(&response),
        [format!("image-patch: namespace {namespace} is never patched; object admitted unchanged")]
    );
}

#[rstest]
#[case::namespace_in_scope(
    "mojaloop/central-ledger:v17.0.0",
    "mojaloop/central-ledger:v17.0.0.1-patch"
)]
#[case::registry_alias_kept(
    "mirror.gcr.io/mojaloop/quoting-service:v10.4.0",
    "mirror.gcr.io/mojaloop/quoting-service:v10.4.0.2-patch"
)]
#[case::docker_hub_spelled_out(
    "docker.io/mojaloop/quoting-service:v10.4.0",
    "docker.io/mojaloop/quoting-service:v10.4.0.2-patch"
)]
#[case::approved_digest_pinned(
    "mojaloop/account-lookup-service:v15.0.0",
    "mojaloop/account-lookup-service:v15.0.0.3-patch@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)]
#[case::older_patch_raised("mojaloop/quoting-service:v10.4.0.1-patch", PATCHED)]
#[tokio::test]
async fn image_rewritten(#[case] image: &str, #[case] expected: &str) {
    let router = router();
    let mut review = review("deployment");
    set_image(&mut review, "deployment", "containers", "app", image);

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        image_of(&patched, "deployment", "containers", "app"),
        expected
    );
    assert_eq!(previous_images(&patched["metadata"]), json!({"app": image}));
}

#[tokio::test]
async fn init_container_other_line_kept() {
    let router = router();
    let mut review = review("pod");
    set_image(
        &mut review,
        "pod",
        "initContainers",
        "wait-for-db",
        "mojaloop/quoting-service:v10.3.0",
    );

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        image_of(&patched, "pod", "initContainers", "wait-for-db"),
        "mojaloop/quoting-service:v10.3.0"
    );
    assert_eq!(image_of(&patched, "pod", "containers", "app"), PATCHED);
    assert_eq!(warnings(&response).len(), 1);
}

#[tokio::test]
async fn init_container_same_line_patched() {
    let router = router();
    let mut review = review("pod");
    set_image(&mut review, "pod", "initContainers", "wait-for-db", BASE);

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        image_of(&patched, "pod", "initContainers", "wait-for-db"),
        PATCHED
    );
    assert_eq!(
        previous_images(&patched["metadata"]),
        json!({"app": BASE, "wait-for-db": BASE})
    );
    assert_eq!(warnings(&response).len(), 2);
}

#[tokio::test]
async fn captured_ephemeral_update_patched() {
    let router = router();
    let review = review("pod-ephemeralcontainers");

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(review["request"]["subResource"], "ephemeralcontainers");
    assert_eq!(
        image_of(&patched, "pod", "ephemeralContainers", "debugger"),
        PATCHED
    );
    assert_eq!(
        image_of(&patched, "pod", "containers", "app"),
        BASE,
        "the update does not change this image"
    );
    assert_eq!(warnings(&response).len(), 1);
}

#[tokio::test]
async fn captured_deployment_update_patched() {
    let router = router();
    let review = review("deployment-update");

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(review["request"]["operation"], "UPDATE");
    assert_eq!(
        image_of(&patched, "deployment", "containers", "app"),
        PATCHED
    );
    assert_eq!(previous_images(&patched["metadata"]), json!({"app": BASE}));
}

#[tokio::test]
async fn ephemeral_container_added_patched() {
    let router = router();
    let mut review = review("pod");
    let old = review["request"]["object"].clone();
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["oldObject"] = old;
    set_image(&mut review, "pod", "containers", "app", PATCHED);
    review["request"]["oldObject"]["spec"]["containers"] =
        review["request"]["object"]["spec"]["containers"].clone();
    review["request"]["object"]["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": BASE, "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
    }]);

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        image_of(&patched, "pod", "ephemeralContainers", "debugger"),
        PATCHED
    );
    assert_eq!(warnings(&response).len(), 1);
}

#[rstest]
#[case("pod")]
#[case("job")]
#[tokio::test]
async fn update_keeps_images_it_does_not_change(#[case] kind: &str) {
    let router = router();
    let mut review = review(kind);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    review["request"]["object"]["metadata"]["labels"]["team"] = json!("payments");

    let response = mutate(&router, &review).await;

    assert!(response.get("patch").is_none(), "patch: {response}");
}

#[tokio::test]
async fn job_update_changing_image_patched() {
    let router = router();
    let mut review = review("job");
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    review["request"]["oldObject"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("mojaloop/quoting-service:v10.3.0");

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(image_of(&patched, "job", "containers", "app"), PATCHED);
}

#[tokio::test]
async fn deployment_update_patched() {
    let router = router();
    let mut review = review("deployment");
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        image_of(&patched, "deployment", "containers", "app"),
        PATCHED
    );
}

#[tokio::test]
async fn recorded_annotation_merged() {
    let router = router();
    let mut review = review("deployment");
    let recorded = json!({"log-shipper": "busybox:1.35"}).to_string();
    review["request"]["object"]["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION] =
        json!(recorded);

    let response = mutate(&router, &review).await;

    let patched = apply(&review, &response);
    assert_eq!(
        previous_images(&patched["metadata"]),
        json!({"app": BASE, "log-shipper": "busybox:1.35"})
    );
}

#[tokio::test]
async fn dry_run_gets_same_response() {
    let state = state_with(APPROVALS);
    let router = routes::router(state.clone());
    let review = review("deployment");
    let mut dry_run = review.clone();
    dry_run["request"]["dryRun"] = json!(true);

    let real = mutate(&router, &review).await;
    let dry = mutate(&router, &dry_run).await;

    assert_eq!(real["patch"], dry["patch"]);
    assert_eq!(real["warnings"], dry["warnings"]);
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains(r#"kind="Deployment",outcome="patched",dry_run="true""#),
        "{metrics}"
    );
}

#[tokio::test]
async fn audit_path_warns_without_patch() {
    let router = router();
    let review = review("deployment");

    let response = send_review(&router, "/audit", &review).await;

    assert!(response.get("patch").is_none());
    assert_eq!(
        warnings(&response),
        [format!(
            "image-patch: container \"app\" image {BASE} would be rewritten to {PATCHED} (approvals[0]) (audit mode: unchanged)"
        )]
    );
}

#[tokio::test]
async fn global_audit_mode_overrides_path() {
    let mut state = state_with(APPROVALS);
    state.mode = webhook::admission::Mode::Audit;
    let router = routes::router(state);
    let review = review("pod");

    let response = mutate(&router, &review).await;

    assert!(response.get("patch").is_none());
    assert_eq!(warnings(&response).len(), 1);
}

#[tokio::test]
async fn unknown_kind_allowed_with_warning() {
    let router = router();
    let mut review = review("deployment");
    review["request"]["kind"] = json!({"group": "example.org", "version": "v1", "kind": "Rollout"});
    review["request"]["object"]["apiVersion"] = json!("example.org/v1");
    review["request"]["object"]["kind"] = json!("Rollout");

    let response = mutate(&router, &review).await;

    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    assert_eq!(
        warnings(&response),
        ["image-patch: kind example.org/v1/Rollout is not handled; object admitted unchanged"]
    );
}

/// The kind label comes from the request, so kinds the webhook does not handle share one
/// series instead of adding one each.
#[tokio::test]
async fn unknown_kinds_share_one_series() {
    let state = state_with(APPROVALS);
    let router = routes::router(state.clone());
    for kind in ["Rollout", "Made\"Up"] {
        let mut review = review("deployment");
        review["request"]["kind"] = json!({"group": "example.org", "version": "v1", "kind": kind});
        mutate(&router, &review).await;
    }

    let metrics = state.metrics.encode();

    assert!(
        metrics.contains(r#"admission_requests_total{kind="other",outcome="unknown_kind",dry_run="false"} 2"#),
        "{metrics}"
    );
    assert!(!metrics.contains("Rollout"), "{metrics}");
}

#[tokio::test]
async fn pod_without_containers_unchanged() {
    let router = router();
    let mut review = review("pod");
    review["request"]["object"]["spec"]["containers"] = json!([]);
    review["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("initContainers");

    let response = mutate(&router, &review).await;

    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
}

#[tokio::test]
async fn delete_without_object_unchanged() {
    let router = router();
    let mut review = review("pod");
    review["request"]["operation"] = json!("DELETE");
    review["request"]["oldObject"] = review["request"]["object"].take();

    let response = mutate(&router, &review).await;

    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
}

#[tokio::test]
async fn not_loaded_allows_with_warning() {
    let state = AppState::new(std::sync::Arc::new(webhook::metrics::Metrics::new()));
    let router = routes::router(state);

    let response = mutate(&router, &review("pod")).await;

    assert!(response.get("patch").is_none());
    assert_eq!(
        warnings(&response),
        ["image-patch: approvals not loaded yet; object admitted unchanged"]
    );
}

#[rstest]
#[case::not_json(b"{\"apiVersion\": ".to_vec(), "request body is not JSON")]
#[case::empty(Vec::new(), "request body is not JSON")]
#[case::v1beta1(
    br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(),
    "expected apiVersion \"admission.k8s.io/v1\""
)]
#[case::wrong_kind(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#.to_vec(), "found apiVersion \"admission.k8s.io/v1\" and kind \"Pod\"")]
#[case::no_request(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "AdmissionReview has no request")]
#[case::request_not_object(
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":[1]}"#.to_vec(),
    "AdmissionReview request is invalid"
)]
#[tokio::test]
async fn malformed_body_is_bad_request(#[case] body: Vec<u8>, #[case] reason: &str) {
    let router = router();

    let (status, answer) = post(&router, "/mutate", body).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.contains(reason),
        "{answer:?} does not contain {reason:?}"
    );
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let mut state = state_with(APPROVALS);
    state.limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let router = routes::router(state.clone());
    let mut review = review("pod");
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"padding": "x".repeat(100 * 1024)});

    let (status, answer) = post(&router, "/mutate", serde_json::to_vec(&review).unwrap()).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        "request body exceeds 65536 bytes"
    );
    assert!(state.metrics.encode().contains(r#"outcome="invalid""#));
}

#[tokio::test]
async fn probes_follow_store() {
    let state = AppState::new(std::sync::Arc::new(webhook::metrics::Metrics::new()));
    let router = routes::router(state.clone());
    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        }
    };

    assert_eq!(get("/healthz").await, StatusCode::OK);
    assert_eq!(get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    state.store.apply_document(APPROVALS, "test").unwrap();
    assert_eq!(get("/readyz").await, StatusCode::OK);
    state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn metrics_count_requests_and_rewrites() {
    let state = state_with(APPROVALS);
    let router = routes::router(state.clone());
    mutate(&router, &review("deployment")).await;
    mutate(&router, &review("job")).await;

    let text = state.metrics.encode();

    assert!(text.contains(r#"image_patch_webhook_admission_requests_total{kind="Deployment",outcome="patched",dry_run="false"} 1"#), "{text}");
    assert!(
        text.contains(r#"image_patch_webhook_image_rewrites_total{kind="Job",mode="enforce"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("image_patch_webhook_approvals_loaded 3"),
        "{text}"
    );
    assert!(
        text.contains("image_patch_webhook_admission_duration_seconds_count 2"),
        "{text}"
    );
}

/// Rewrites `docker.io` images to a mirror, as a policy engine's mutation would.
fn mirror_images(object: &mut Value, kind: &str) {
    let spec = object.pointer_mut(spec_pointer(kind)).unwrap();
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let image = container["image"].as_str().unwrap().to_owned();
            let is_docker_hub =
                !image.split('/').next().unwrap().contains('.') || image.starts_with("docker.io/");
            if is_docker_hub {
                container["image"] = json!(format!(
                    "mirror.gcr.io/{}",
                    image.trim_start_matches("docker.io/")
                ));
            }
        }
    }
}

#[tokio::test]
async fn mirror_webhook_order_gives_same_result() {
    let router = router();
    let original = review("deployment");

    // Patch first, then the mirror, then the reinvocation of this webhook.
    let mut patch_first = original.clone();
    patch_first["request"]["object"] = apply(&patch_first, &mutate(&router, &patch_first).await);
    mirror_images(&mut patch_first["request"]["object"], "deployment");
    let reinvoked = mutate(&router, &patch_first).await;
    assert!(
        reinvoked.get("patch").is_none(),
        "reinvocation patched again: {reinvoked}"
    );
    let patch_first = patch_first["request"]["object"].clone();

    // The mirror first, then this webhook.
    let mut mirror_first = original.clone();
    mirror_images(&mut mirror_first["request"]["object"], "deployment");
    let mirror_first = apply(&mirror_first, &mutate(&router, &mirror_first).await);

    assert_eq!(
        image_of(&patch_first, "deployment", "containers", "app"),
        "mirror.gcr.io/mojaloop/quoting-service:v10.4.0.2-patch"
    );
    assert_eq!(
        image_of(&patch_first, "deployment", "containers", "app"),
        image_of(&mirror_first, "deployment", "containers", "app")
    );
    assert_eq!(
        patch_first["spec"]["template"]["spec"],
        mirror_first["spec"]["template"]["spec"]
    );
}

#[tokio::test(start_paused = true)]
async fn stalled_body_times_out() {
    let router = router();
    let stalled = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();

    let (status, answer) = post(&router, "/mutate", axum::body::Body::from_stream(stalled)).await;

    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        "request body not received within 3s"
    );
}

/// The webhook reuses decisions between requests, so an edit of the approvals must still
/// reach the very next request: first a rewrite, then none once the approval is withdrawn,
/// then the rewrite again once it is restored.
#[tokio::test]
async fn approvals_edit_reaches_next_request() {
    let state = state_with(APPROVALS);
    let router = routes::router(state.clone());
    let review = review("deployment");
    let withdrawn = "approvals: []\n";

    let approved = mutate(&router, &review).await;
    state.store.apply_document(withdrawn, "test").unwrap();
    let after_withdrawal = mutate(&router, &review).await;
    state.store.apply_document(APPROVALS, "test").unwrap();
    let restored = mutate(&router, &review).await;

    assert_eq!(image_of(&apply(&review, &approved), "deployment", "containers", "app"), PATCHED);
    assert!(after_withdrawal.get("patch").is_none(), "patch: {after_withdrawal}");
    assert_eq!(image_of(&apply(&review, &restored), "deployment", "containers", "app"), PATCHED);
}
