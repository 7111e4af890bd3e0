//! AdmissionReview in, AdmissionReview out: reading the request, deciding each image with
//! [`common::decide`], and building the JSONPatch, warnings and previous-images annotation.
//!
//! ```text
//!   body ──parse_review──► AdmissionRequest ──review──► AdmissionResponse
//!                                               │  (uid echoed, allowed: true)
//!          images::image_fields per kind ───────┤
//!          common::decide per image ────────────┘  patch: replace .../image, add annotation
//! ```
//!
//! Every response allows the object: the webhook mutates, it never rejects.

use std::collections::BTreeMap;

use common::{Approvals, Decision, Rewrite};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::ByteString;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use serde_json::{Value, json};

use crate::images::{self, ImageField, PodSpecLocation};
use crate::metrics::Outcome;

/// Annotation that records the images an object had before its rewrite: a JSON object from
/// container name to image, for example `{"app":"mojaloop/quoting-service:v10.4.0"}`.
pub const PREVIOUS_IMAGES_ANNOTATION: &str = "patches.mojaloop.io/previous-images";

/// The API server shows warnings up to this many characters and truncates longer ones.
const MAX_WARNING_CHARS: usize = 256;

/// Whether rewrites are applied or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Apply rewrites with a JSONPatch.
    #[default]
    Enforce,
    /// Leave objects unchanged and warn what would be rewritten.
    Audit,
}

/// Reason a request body is not a usable AdmissionReview. Each gets an HTTP 400 response.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body does not parse as JSON.
    #[error("request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body is JSON, but not an `admission.k8s.io/v1` AdmissionReview.
    #[error(
        "expected apiVersion {META_API_VERSION_V1:?} and kind {META_KIND:?}, found apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType {
        /// The `apiVersion` found, empty when absent.
        api_version: String,
        /// The `kind` found, empty when absent.
        kind: String,
    },
    /// The AdmissionReview has no `request`.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// The `request` does not have the AdmissionRequest shape.
    #[error("AdmissionReview request is invalid: {0}")]
    InvalidRequest(serde_json::Error),
}

/// An AdmissionRequest with its `object` and `oldObject` kept as the JSON they were parsed
/// into, so that the review reads them without converting them back from typed objects.
#[derive(Debug)]
pub struct ReviewRequest {
    /// The request's other fields. Its `object` and `old_object` are always `None`.
    pub request: AdmissionRequest<DynamicObject>,
    /// The object to admit, `None` for DELETE and CONNECT.
    pub object: Option<Value>,
    /// The object before an UPDATE or DELETE.
    pub old_object: Option<Value>,
}

/// Parses a request body into the AdmissionRequest it carries.
pub fn parse_review(body: &[u8]) -> Result<ReviewRequest, ReviewError> {
    let mut value: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;

    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != META_API_VERSION_V1 || kind != META_KIND {
        return Err(ReviewError::WrongType {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    }
    if value.get("request").is_none_or(Value::is_null) {
        return Err(ReviewError::MissingRequest);
    }

    // The objects are taken out before the typed parse, which then only reads the small
    // fields. A request that is not a JSON object fails that parse.
    let (object, old_object) = match value.get_mut("request").and_then(Value::as_object_mut) {
        Some(request) => (
            take_object(request, "object")?,
            take_object(request, "oldObject")?,
        ),
        None => (None, None),
    };
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(ReviewError::InvalidRequest)?;
    let request = review.try_into().map_err(|_| ReviewError::MissingRequest)?;
    Ok(ReviewRequest {
        request,
        object,
        old_object,
    })
}

/// Removes the object under `key` from `request`: `None` when it is absent or null, an
/// error when it is not a JSON object.
fn take_object(
    request: &mut serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Value>, ReviewError> {
    match request.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object)),
        Some(_) => Err(ReviewError::InvalidRequest(serde::de::Error::custom(
            format_args!("{key} is not a JSON object"),
        ))),
    }
}

/// One image the review rewrites, or would rewrite in audit mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRewrite {
    /// The image field.
    pub field: ImageField,
    /// The decision's rewrite.
    pub rewrite: Rewrite,
}

/// The result of reviewing one AdmissionRequest.
#[derive(Debug)]
pub struct Review {
    /// The response: always allowed, with the request's uid.
    pub response: AdmissionResponse,
    /// Outcome of the review, for metrics and logs.
    pub outcome: Outcome,
    /// The rewrites applied (enforce) or reported (audit).
    pub rewrites: Vec<ImageRewrite>,
}

impl Review {
    fn unchanged(
        request: &AdmissionRequest<DynamicObject>,
        outcome: Outcome,
        warning: Option<String>,
    ) -> Self {
        let mut response = AdmissionResponse::from(request);
        response.warnings = warning.map(|warning| vec![warning]);
        Self {
            response,
            outcome,
            rewrites: Vec::new(),
        }
    }

    /// Allows the object unchanged because its namespace is never patched: the webhook's own,
    /// or `kube-system`. The webhook configuration already leaves them out, and this check keeps
    /// the rule even when a configuration is edited by hand.
    pub fn protected_namespace(request: &AdmissionRequest<DynamicObject>, namespace: &str) -> Self {
        tracing::warn!(
            namespace,
            "request for a namespace that is never patched; object admitted unchanged"
        );
        Self::unchanged(
            request,
            Outcome::Unchanged,
            Some(format!(
                "image-patch: namespace {namespace} is never patched; object admitted unchanged"
            )),
        )
    }

    /// Allows the object unchanged after an internal fault, with a warning that names it.
    pub fn internal_error(request: &AdmissionRequest<DynamicObject>, reason: &str) -> Self {
        Self::unchanged(
            request,
            Outcome::Error,
            Some(format!(
                "image-patch: internal error ({reason}); object admitted unchanged"
            )),
        )
    }

    /// Allows the object unchanged because no approvals were loaded yet.
    pub fn not_loaded(request: &AdmissionRequest<DynamicObject>) -> Self {
        Self::unchanged(
            request,
            Outcome::Unchanged,
            Some("image-patch: approvals not loaded yet; object admitted unchanged".to_owned()),
        )
    }
}

/// Reviews one request: finds its image fields, decides each under `approvals`, and builds
/// the response. Never fails: a fault becomes an allowed, unchanged response with a warning.
pub fn review(review_request: &ReviewRequest, approvals: &Approvals, mode: Mode) -> Review {
    let request = &review_request.request;
    let Some(object) = &review_request.object else {
        // DELETE and CONNECT carry no object to mutate.
        return Review::unchanged(request, Outcome::Unchanged, None);
    };
    let Some(location) = images::pod_spec_location(&request.kind) else {
        let warning = format!(
            "image-patch: kind {} is not handled; object admitted unchanged",
            display_kind(&request.kind)
        );
        return Review::unchanged(request, Outcome::UnknownKind, Some(warning));
    };

    let rewrites = decide_images(review_request, object, location, approvals);
    if rewrites.is_empty() {
        return Review::unchanged(request, Outcome::Unchanged, None);
    }

    let warnings = rewrites
        .iter()
        .map(|rewrite| rewrite_warning(rewrite, mode))
        .collect();
    let mut response = AdmissionResponse::from(request);
    response.warnings = Some(warnings);
    if mode == Mode::Audit {
        return Review {
            response,
            outcome: Outcome::Audited,
            rewrites,
        };
    }

    let patch = match build_patch(object, location, &rewrites) {
        Ok(patch) => patch,
        Err(reason) => return Review::internal_error(request, &reason),
    };
    match response.with_patch(patch) {
        Ok(response) => Review {
            response,
            outcome: Outcome::Patched,
            rewrites,
        },
        Err(error) => Review::internal_error(request, &error.to_string()),
    }
}

/// Serializes the AdmissionReview that carries `response`. kube-core 5.0 serializes
/// `AdmissionResponse::patch` as an array of byte values, and the `admission.k8s.io/v1`
/// API documents a base64 string, so the patch is written as base64, about a quarter of the size.
pub fn response_body(mut response: AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    let patch = response.patch.take();
    let mut review = serde_json::to_value(response.into_review())?;
    if let Some(patch) = patch {
        review["response"]["patch"] = serde_json::to_value(ByteString(patch))?;
    }
    serde_json::to_vec(&review)
}

/// Decides every image of the object. On an UPDATE of a Pod or Job only images that the
/// update changes count (see [`PodSpecLocation::rewrite_unchanged_on_update`]).
fn decide_images(
    review_request: &ReviewRequest,
    object: &Value,
    location: PodSpecLocation,
    approvals: &Approvals,
) -> Vec<ImageRewrite> {
    let request = &review_request.request;
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let old_object = match (&request.operation, &review_request.old_object) {
        (Operation::Update, Some(old)) if !location.rewrite_unchanged_on_update => Some(old),
        _ => None,
    };

    let mut rewrites = Vec::new();
    for field in images::image_fields(object, location.spec) {
        let unchanged_by_update = old_object
            .and_then(|old| old.pointer(&field.pointer))
            .is_some_and(|old_image| old_image.as_str() == Some(field.image.as_str()));
        if unchanged_by_update {
            continue;
        }

        match common::decide(&field.image, namespace, approvals) {
            Decision::Rewrite(rewrite) => rewrites.push(ImageRewrite { field, rewrite }),
            Decision::Keep(reason) => {
                tracing::debug!(container = %field.container, image = %field.image, ?reason, "image kept");
            }
        }
    }
    rewrites
}

fn rewrite_warning(rewrite: &ImageRewrite, mode: Mode) -> String {
    let ImageRewrite { field, rewrite } = rewrite;
    let verb = match mode {
        Mode::Enforce => "rewritten to",
        Mode::Audit => "would be rewritten to",
    };
    let audit = match mode {
        Mode::Enforce => "",
        Mode::Audit => " (audit mode: unchanged)",
    };
    let warning = format!(
        "image-patch: container {:?} image {} {verb} {} (approvals[{}]){audit}",
        field.container, rewrite.from, rewrite.to, rewrite.approval_index
    );
    if warning.chars().count() <= MAX_WARNING_CHARS {
        return warning;
    }
    let mut short: String = warning.chars().take(MAX_WARNING_CHARS - 3).collect();
    short.push_str("...");
    short
}

/// Builds the JSONPatch: one `replace` per image, and the previous-images annotation on the
/// object and, for workloads, on the pod template so that its Pods carry it too.
fn build_patch(
    object: &Value,
    location: PodSpecLocation,
    rewrites: &[ImageRewrite],
) -> Result<Patch, String> {
    let mut operations = Vec::new();
    for ImageRewrite { field, rewrite } in rewrites {
        operations.push(PatchOperation::Replace(ReplaceOperation {
            path: parse_pointer(&field.pointer)?,
            value: Value::String(rewrite.to.clone()),
        }));
    }

    let previous: BTreeMap<String, String> = rewrites
        .iter()
        .map(|ImageRewrite { field, rewrite }| (field.container.clone(), rewrite.from.clone()))
        .collect();
    operations.push(annotation_operation(object, "/metadata", &previous)?);
    if let Some(template_metadata) = location.template_metadata {
        operations.push(annotation_operation(object, template_metadata, &previous)?);
    }
    Ok(Patch(operations))
}

/// Builds the `add` that sets the previous-images annotation under `metadata_pointer`,
/// keeping entries already recorded for containers that this review does not rewrite.
fn annotation_operation(
    object: &Value,
    metadata_pointer: &str,
    previous: &BTreeMap<String, String>,
) -> Result<PatchOperation, String> {
    let metadata = object.pointer(metadata_pointer);
    let annotations = metadata
        .and_then(|metadata| metadata.get("annotations"))
        .and_then(Value::as_object);

    let mut recorded: BTreeMap<String, String> = annotations
        .and_then(|annotations| annotations.get(PREVIOUS_IMAGES_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|recorded| serde_json::from_str(recorded).ok())
        .unwrap_or_default();
    recorded.extend(
        previous
            .iter()
            .map(|(container, image)| (container.clone(), image.clone())),
    );
    let value = serde_json::to_string(&recorded).map_err(|error| error.to_string())?;

    let (path, value) = match (metadata, annotations) {
        (None, _) => (
            parse_pointer(metadata_pointer)?,
            json!({"annotations": {PREVIOUS_IMAGES_ANNOTATION: value}}),
        ),
        (Some(_), None) => {
            let path = parse_pointer(&format!("{metadata_pointer}/annotations"))?;
            (path, json!({PREVIOUS_IMAGES_ANNOTATION: value}))
        }
        (Some(_), Some(_)) => {
            let mut path = parse_pointer(&format!("{metadata_pointer}/annotations"))?;
            path.push_back(PREVIOUS_IMAGES_ANNOTATION);
            (path, Value::String(value))
        }
    };
    Ok(PatchOperation::Add(AddOperation { path, value }))
}

fn parse_pointer(pointer: &str) -> Result<PointerBuf, String> {
    PointerBuf::parse(pointer).map_err(|error| format!("invalid JSON pointer {pointer:?}: {error}"))
}

/// Formats a kind as `group/version/Kind`, or `version/Kind` for the core group.
pub fn display_kind(kind: &kube::core::GroupVersionKind) -> String {
    if kind.group.is_empty() {
        format!("{}/{}", kind.version, kind.kind)
    } else {
        format!("{}/{}/{}", kind.group, kind.version, kind.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_added_without_annotations() {
        let object = json!({"metadata": {"name": "quoting"}});
        let previous = BTreeMap::from([(
            "app".to_owned(),
            "mojaloop/quoting-service:v10.4.0".to_owned(),
        )]);

        let operation = annotation_operation(&object, "/metadata", &previous).unwrap();

        let mut patched = object.clone();
        json_patch::patch(&mut patched, &[operation]).unwrap();
        assert_eq!(
            patched["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION],
            r#"{"app":"mojaloop/quoting-service:v10.4.0"}"#
        );
    }

    #[test]
    fn annotation_added_without_template_metadata() {
        let object = json!({"spec": {"template": {"spec": {}}}});
        let previous = BTreeMap::from([("app".to_owned(), "a:v1.0.0".to_owned())]);

        let operation =
            annotation_operation(&object, "/spec/template/metadata", &previous).unwrap();

        let mut patched = object.clone();
        json_patch::patch(&mut patched, &[operation]).unwrap();
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION],
            r#"{"app":"a:v1.0.0"}"#
        );
    }

    #[test]
    fn annotation_merges_recorded_entries() {
        let recorded = r#"{"app":"a:v1.0.0","sidecar":"b:v2.0.0"}"#;
        let object = json!({"metadata": {"annotations": {"team": "payments", PREVIOUS_IMAGES_ANNOTATION: recorded}}});
        let previous = BTreeMap::from([("app".to_owned(), "a:v1.0.1".to_owned())]);

        let operation = annotation_operation(&object, "/metadata", &previous).unwrap();

        let mut patched = object.clone();
        json_patch::patch(&mut patched, &[operation]).unwrap();
        let annotations = &patched["metadata"]["annotations"];
        assert_eq!(annotations["team"], "payments");
        assert_eq!(
            annotations[PREVIOUS_IMAGES_ANNOTATION],
            r#"{"app":"a:v1.0.1","sidecar":"b:v2.0.0"}"#
        );
    }

    #[test]
    fn warning_longer_than_limit_is_cut() {
        let long_name = format!("registry.example.org/{}", "x".repeat(300));
        let rewrite = ImageRewrite {
            field: ImageField {
                pointer: "/spec/containers/0/image".to_owned(),
                list: "containers",
                container: "app".to_owned(),
                image: format!("{long_name}:v1.0.0"),
            },
            rewrite: Rewrite {
                from: format!("{long_name}:v1.0.0"),
                to: format!("{long_name}:v1.0.0.1-patch"),
                approval_index: 0,
            },
        };

        let warning = rewrite_warning(&rewrite, Mode::Enforce);

        assert_eq!(warning.chars().count(), MAX_WARNING_CHARS);
        assert!(warning.ends_with("..."));
    }

    #[test]
    fn parse_rejects_wrong_api_version() {
        let body =
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#;

        let error = parse_review(body).unwrap_err();

        assert!(
            matches!(error, ReviewError::WrongType { ref api_version, .. } if api_version == "admission.k8s.io/v1beta1")
        );
    }

    #[test]
    fn parse_rejects_object_not_object() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":"pod"}}"#;

        let error = parse_review(body).unwrap_err();

        assert!(matches!(error, ReviewError::InvalidRequest(_)));
        assert!(error.to_string().contains("object is not a JSON object"));
    }

    #[test]
    fn response_patch_is_base64() {
        let mut response = AdmissionResponse::invalid("unused");
        response.allowed = true;
        let patch = Patch(vec![PatchOperation::Replace(ReplaceOperation {
            path: parse_pointer("/spec/containers/0/image").unwrap(),
            value: json!("a:v1.0.1"),
        })]);
        let response = response.with_patch(patch).unwrap();

        let body: Value = serde_json::from_slice(&response_body(response).unwrap()).unwrap();

        assert_eq!(
            body["response"]["patch"],
            "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9zcGVjL2NvbnRhaW5lcnMvMC9pbWFnZSIsInZhbHVlIjoiYTp2MS4wLjEifV0="
        );
        assert_eq!(body["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn parse_rejects_missing_request() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;

        assert!(matches!(
            parse_review(body),
            Err(ReviewError::MissingRequest)
        ));
    }
}
