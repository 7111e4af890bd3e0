//! Fixtures shared by the integration tests: AdmissionReview requests recorded from
//! kube-apiserver v1.36 of the local test stack (in `reviews/`, one a handled kind, plus a
//! Deployment UPDATE and a Pod `ephemeralcontainers` UPDATE), an approvals document, and
//! helpers to call the router and apply its patch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use serde_json::Value;
use tower::ServiceExt;
use webhook::metrics::Metrics;
use webhook::routes::{self, AppState};

/// Approvals used by most tests. The quoting-service approval applies everywhere, the
/// central-ledger one only in the namespace `mojaloop`, and the account-lookup one pins
/// a digest.
pub const APPROVALS: &str = r#"
approvals:
  - image: mojaloop/quoting-service
    version: v10.4.0
    patch: v10.4.0.2-patch
    approvedBy: ops@example.org
  - image: mojaloop/central-ledger
    version: v17.0.0
    patch: v17.0.0.1-patch
    namespaces: [mojaloop]
  - image: mojaloop/account-lookup-service
    version: v15.0.0
    patch: v15.0.0.3-patch
    digest: sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
registries:
  mirror.gcr.io: docker.io
"#;

/// The approved patch of quoting-service.
pub const PATCHED: &str = "mojaloop/quoting-service:v10.4.0.2-patch";

/// Directory of this crate.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads the AdmissionReview fixture of `kind` (`pod`, `deployment`, …).
pub fn review(kind: &str) -> Value {
    let path = crate_dir()
        .join("tests/common/reviews")
        .join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// JSON pointer of the pod spec in the object of a review of `kind`.
pub fn spec_pointer(kind: &str) -> &'static str {
    match kind {
        "pod" => "/spec",
        "cronjob" => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    }
}

/// Sets the image of `container` in the `list` of a review's pod spec.
pub fn set_image(review: &mut Value, kind: &str, list: &str, container: &str, image: &str) {
    let spec = review["request"]["object"]
        .pointer_mut(spec_pointer(kind))
        .unwrap();
    let containers = spec[list].as_array_mut().unwrap();
    let entry = containers
        .iter_mut()
        .find(|entry| entry["name"] == container)
        .unwrap();
    entry["image"] = Value::String(image.to_owned());
}

/// Returns the image of `container` in the `list` of `object`'s pod spec.
pub fn image_of(object: &Value, kind: &str, list: &str, container: &str) -> String {
    let spec = object.pointer(spec_pointer(kind)).unwrap();
    let entry = spec[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == container)
        .unwrap();
    entry["image"].as_str().unwrap().to_owned()
}

/// Builds app state whose store contains `approvals`.
pub fn state_with(approvals: &str) -> AppState {
    let state = AppState::new(Arc::new(Metrics::new()));
    state
        .store
        .apply_document(approvals, "test")
        .expect("test approvals parse");
    state
}

/// Builds a router whose store contains [`APPROVALS`].
pub fn router() -> Router {
    routes::router(state_with(APPROVALS))
}

/// Sends `body` to `path` and returns the status and body.
pub async fn post(router: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// Sends a review to `/mutate`, checks that the response is an AdmissionReview, and returns
/// its `response` part.
pub async fn mutate(router: &Router, review: &Value) -> Value {
    send_review(router, "/mutate", review).await
}

/// Sends a review to `path` and returns the `response` part of the AdmissionReview.
pub async fn send_review(router: &Router, path: &str, review: &Value) -> Value {
    let (status, body) = post(router, path, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&body)
    );
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    answer["response"].clone()
}

/// Decodes the response's JSONPatch; empty when it has none. The patch must be the base64
/// string of the `admission.k8s.io/v1` API reference.
pub fn patch_of(response: &Value) -> json_patch::Patch {
    let bytes = match response.get("patch") {
        None => return json_patch::Patch(Vec::new()),
        Some(Value::String(encoded)) => BASE64_STANDARD.decode(encoded).unwrap(),
        Some(other) => panic!("patch is not a base64 string: {other}"),
    };
    assert_eq!(response["patchType"], "JSONPatch");
    serde_json::from_slice(&bytes).unwrap()
}

/// Applies the response's JSONPatch to the review's object, as the API server does.
pub fn apply(review: &Value, response: &Value) -> Value {
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch_of(response)).unwrap();
    object
}

/// Returns the response's warnings.
pub fn warnings(response: &Value) -> Vec<String> {
    response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|warnings| {
            warnings
                .iter()
                .map(|warning| warning.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the certs script with `--files-only` into `dir`, for 127.0.0.1 and localhost.
pub fn run_certs_script(dir: &Path, extra: &[&str]) {
    let script = crate_dir().join("../certs-script/certs.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .args(["--files-only", "--dir"])
        .arg(dir)
        .args(["--ip", "127.0.0.1", "--dns", "localhost"])
        .args(extra)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
