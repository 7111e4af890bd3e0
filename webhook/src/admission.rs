//! AdmissionReview in, AdmissionReview out: reading the request, deciding each image with
//! [`common::decide`], and building the JSONPatch, warnings and previous-images annotation.
//!
//! ```text
//!   body ──parse_review──► ReviewRequest ──review──► Response ──response_body──► body
//!                           (borrowed view)    │      (uid echoed, allowed: true)
//!          PodSpecLocation per kind ───────────┤
//!          common::decide per image ───────────┘  patch: replace .../image, add annotation
//! ```
//!
//! Every response allows the object: the webhook mutates, it never rejects.
//!
//! The request is read in one pass into borrowed views that keep only the fields a review
//! needs (see [`crate::images`]). An earlier version built a `serde_json::Value` of the whole
//! review first, and that tree cost about half of the handler's time (BENCHMARKS.md).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Approvals, Decision, Rewrite};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::ByteString;
use kube::core::GroupVersionKind;
use kube::core::admission::{META_API_VERSION_V1, META_KIND, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::decisions::DecisionCache;
use crate::images::{self, ImageField, ImageSlot, MetadataView, ObjectView, PodSpecLocation};
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
    InvalidRequest(String),
}

/// The AdmissionRequest fields that a review reads, borrowed from the request body. Every
/// field has a default so that a review of another version still parses, and
/// [`parse_review`] can report its `apiVersion` instead of a missing field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReviewRequest<'a> {
    /// The request's uid, echoed in the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The object's kind; `None` only in a malformed request.
    pub kind: Option<GroupVersionKind>,
    /// The object's namespace; `None` for cluster-scoped objects.
    #[serde(borrow, deserialize_with = "images::optional_text")]
    pub namespace: Option<Cow<'a, str>>,
    /// The object's name, empty when the API server generates it.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The operation; `None` only in a malformed request.
    pub operation: Option<Operation>,
    /// Whether the request is a dry run.
    pub dry_run: Option<bool>,
    /// The object to admit, `None` for DELETE and CONNECT.
    #[serde(borrow)]
    pub object: Option<ObjectView<'a>>,
    /// The object before an UPDATE or DELETE.
    #[serde(borrow)]
    pub old_object: Option<ObjectView<'a>>,
}

impl ReviewRequest<'_> {
    /// Returns the namespace, empty for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// Returns the kind's name (`Deployment`), empty when absent.
    pub fn kind_name(&self) -> &str {
        self.kind.as_ref().map_or("", |kind| kind.kind.as_str())
    }

    /// Returns whether the request is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// The top level of an AdmissionReview.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewEnvelope<'a> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<ReviewRequest<'a>>,
}

/// Parses a request body into the AdmissionRequest it carries.
pub fn parse_review(body: &[u8]) -> Result<ReviewRequest<'_>, ReviewError> {
    let envelope: ReviewEnvelope<'_> = serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ReviewError::InvalidRequest(error.to_string())
        } else {
            ReviewError::NotJson(error)
        }
    })?;

    let api_version = envelope.api_version.unwrap_or_default();
    let kind = envelope.kind.unwrap_or_default();
    if api_version != META_API_VERSION_V1 || kind != META_KIND {
        return Err(ReviewError::WrongType {
            api_version: api_version.into_owned(),
            kind: kind.into_owned(),
        });
    }
    let request = envelope.request.ok_or(ReviewError::MissingRequest)?;

    let missing = if request.uid.is_empty() {
        Some("uid")
    } else if request.kind.is_none() {
        Some("kind")
    } else if request.operation.is_none() {
        Some("operation")
    } else {
        None
    };
    match missing {
        Some(field) => Err(ReviewError::InvalidRequest(format!(
            "the {field} field is missing; the API server always sends it"
        ))),
        None => Ok(request),
    }
}

/// The AdmissionResponse of one review. It always allows the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's uid.
    pub uid: String,
    /// Warnings shown to the client.
    pub warnings: Vec<String>,
    /// The JSONPatch as JSON text, `None` when the object stays unchanged.
    pub patch: Option<Vec<u8>>,
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
    pub response: Response,
    /// Outcome of the review, for metrics and logs.
    pub outcome: Outcome,
    /// The rewrites applied (enforce) or reported (audit).
    pub rewrites: Vec<ImageRewrite>,
}

impl Review {
    fn unchanged(request: &ReviewRequest<'_>, outcome: Outcome, warning: Option<String>) -> Self {
        Self {
            response: Response {
                uid: request.uid.clone().into_owned(),
                warnings: warning.into_iter().collect(),
                patch: None,
            },
            outcome,
            rewrites: Vec::new(),
        }
    }

    /// Allows the object unchanged because its namespace is never patched: the webhook's own,
    /// or `kube-system`. The webhook configuration already leaves them out, and this check keeps
    /// the rule even when a configuration is edited by hand.
    pub fn protected_namespace(request: &ReviewRequest<'_>) -> Self {
        let namespace = request.namespace();
        Self::unchanged(
            request,
            Outcome::Unchanged,
            Some(format!(
                "image-patch: namespace {namespace} is never patched; object admitted unchanged"
            )),
        )
    }

    /// Allows the object unchanged after an internal fault, with a warning that names it.
    pub fn internal_error(request: &ReviewRequest<'_>, reason: &str) -> Self {
        Self::unchanged(
            request,
            Outcome::Error,
            Some(format!(
                "image-patch: internal error ({reason}); object admitted unchanged"
            )),
        )
    }

    /// Allows the object unchanged because no approvals were loaded yet.
    pub fn not_loaded(request: &ReviewRequest<'_>) -> Self {
        Self::unchanged(
            request,
            Outcome::Unchanged,
            Some("image-patch: approvals not loaded yet; object admitted unchanged".to_owned()),
        )
    }
}

/// Reviews one request: finds its image fields, decides each under `approvals` (through
/// `decisions`), and builds the response. It returns a [`Review`] in every case: a fault in
/// building the patch becomes an allowed, unchanged response with a warning.
pub fn review(
    request: &ReviewRequest<'_>,
    approvals: &Arc<Approvals>,
    decisions: &DecisionCache,
    mode: Mode,
) -> Review {
    let Some(object) = &request.object else {
        // DELETE and CONNECT carry no object to mutate.
        return Review::unchanged(request, Outcome::Unchanged, None);
    };
    let Some(location) = request.kind.as_ref().and_then(images::pod_spec_location) else {
        let kind = request.kind.as_ref().map(display_kind).unwrap_or_default();
        let warning = format!("image-patch: kind {kind} is not handled; object admitted unchanged");
        return Review::unchanged(request, Outcome::UnknownKind, Some(warning));
    };

    let rewrites = decide_images(request, object, location, approvals, decisions);
    if rewrites.is_empty() {
        return Review::unchanged(request, Outcome::Unchanged, None);
    }

    let warnings = rewrites
        .iter()
        .map(|rewrite| rewrite_warning(rewrite, mode))
        .collect();
    let mut response = Response {
        uid: request.uid.clone().into_owned(),
        warnings,
        patch: None,
    };
    if mode == Mode::Audit {
        return Review {
            response,
            outcome: Outcome::Audited,
            rewrites,
        };
    }

    let patch = build_patch(object, location, &rewrites)
        .and_then(|patch| serde_json::to_vec(&patch).map_err(|error| error.to_string()));
    match patch {
        Ok(patch) => {
            response.patch = Some(patch);
            Review {
                response,
                outcome: Outcome::Patched,
                rewrites,
            }
        }
        Err(reason) => Review::internal_error(request, &reason),
    }
}

/// The AdmissionReview that carries a [`Response`], as the API server reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'r> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'r> {
    uid: &'r str,
    allowed: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'r [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// `ByteString` serializes as base64, the form the `admission.k8s.io/v1` API documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<ByteString>,
}

/// Serializes the AdmissionReview that carries `response`.
pub fn response_body(response: Response) -> serde_json::Result<Vec<u8>> {
    let review = ReviewOut {
        api_version: META_API_VERSION_V1,
        kind: META_KIND,
        response: ResponseOut {
            uid: &response.uid,
            allowed: true,
            warnings: &response.warnings,
            patch_type: response.patch.as_ref().map(|_| "JSONPatch"),
            patch: response.patch.map(ByteString),
        },
    };
    serde_json::to_vec(&review)
}

/// Decides every image of the object. On an UPDATE of a Pod or Job only images that the
/// update changes count (see [`PodSpecLocation::rewrite_unchanged_on_update`]).
fn decide_images(
    request: &ReviewRequest<'_>,
    object: &ObjectView<'_>,
    location: PodSpecLocation,
    approvals: &Arc<Approvals>,
    decisions: &DecisionCache,
) -> Vec<ImageRewrite> {
    let Some(spec) = location.pod_spec(object) else {
        return Vec::new();
    };
    let namespace = request.namespace();
    let old_spec = match (&request.operation, &request.old_object) {
        (Some(Operation::Update), Some(old)) if !location.rewrite_unchanged_on_update => {
            location.pod_spec(old)
        }
        _ => None,
    };

    let mut rewrites = Vec::new();
    for slot in spec.images() {
        let ImageSlot {
            list, index, image, ..
        } = slot;
        let unchanged_by_update =
            old_spec.is_some_and(|old| old.image_at(list, index) == Some(image));
        if unchanged_by_update {
            continue;
        }

        match decisions.decide(image, namespace, approvals) {
            Decision::Rewrite(rewrite) => rewrites.push(ImageRewrite {
                field: slot.to_field(location.spec),
                rewrite,
            }),
            Decision::Keep(reason) => {
                tracing::debug!(
                    uid = %request.uid,
                    namespace,
                    name = %request.name,
                    container = %slot.container.name,
                    image,
                    ?reason,
                    "image kept"
                );
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
    object: &ObjectView<'_>,
    location: PodSpecLocation,
    rewrites: &[ImageRewrite],
) -> Result<Patch, String> {
    let mut operations = Vec::with_capacity(rewrites.len() + 2);
    for ImageRewrite { field, rewrite } in rewrites {
        operations.push(PatchOperation::Replace(ReplaceOperation {
            path: parse_pointer(&field.pointer)?,
            value: Value::String(rewrite.to.clone()),
        }));
    }

    let previous: BTreeMap<&str, &str> = rewrites
        .iter()
        .map(|ImageRewrite { field, rewrite }| (field.container.as_str(), rewrite.from.as_str()))
        .collect();
    operations.push(annotation_operation(
        object.metadata.as_ref(),
        "/metadata",
        &previous,
    )?);
    if let Some(template_metadata) = location.template_metadata {
        let metadata = location
            .template(object)
            .and_then(|template| template.metadata.as_ref());
        operations.push(annotation_operation(metadata, template_metadata, &previous)?);
    }
    Ok(Patch(operations))
}

/// Builds the `add` that sets the previous-images annotation in `metadata`, found at
/// `metadata_pointer`, keeping entries already recorded for containers that this review
/// does not rewrite.
fn annotation_operation(
    metadata: Option<&MetadataView<'_>>,
    metadata_pointer: &str,
    previous: &BTreeMap<&str, &str>,
) -> Result<PatchOperation, String> {
    let annotations = metadata.and_then(|metadata| metadata.annotations.as_ref());

    // An annotation that does not parse was not written by this webhook's rules, so the
    // new record replaces it rather than failing the review.
    let mut recorded: BTreeMap<Cow<'_, str>, Cow<'_, str>> = annotations
        .and_then(|annotations| annotations.previous_images.as_deref())
        .and_then(|recorded| serde_json::from_str(recorded).ok())
        .unwrap_or_default();
    recorded.extend(
        previous
            .iter()
            .map(|(container, image)| (Cow::Borrowed(*container), Cow::Borrowed(*image))),
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

    fn metadata(text: &str) -> Option<MetadataView<'_>> {
        serde_json::from_str(text).unwrap()
    }

    fn apply(object: &Value, operation: PatchOperation) -> Value {
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &[operation]).unwrap();
        patched
    }

    #[test]
    fn annotation_added_without_annotations() {
        let object = json!({"metadata": {"name": "quoting"}});
        let text = object["metadata"].to_string();
        let previous = BTreeMap::from([("app", "mojaloop/quoting-service:v10.4.0")]);

        let operation =
            annotation_operation(metadata(&text).as_ref(), "/metadata", &previous).unwrap();

        let patched = apply(&object, operation);
        assert_eq!(
            patched["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION],
            r#"{"app":"mojaloop/quoting-service:v10.4.0"}"#
        );
    }

    #[test]
    fn annotation_added_without_template_metadata() {
        let object = json!({"spec": {"template": {"spec": {}}}});
        let previous = BTreeMap::from([("app", "a:v1.0.0")]);

        let operation = annotation_operation(None, "/spec/template/metadata", &previous).unwrap();

        let patched = apply(&object, operation);
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION],
            r#"{"app":"a:v1.0.0"}"#
        );
    }

    #[test]
    fn annotation_merges_recorded_entries() {
        let recorded = r#"{"app":"a:v1.0.0","sidecar":"b:v2.0.0"}"#;
        let object = json!({"metadata": {"annotations": {"team": "payments", PREVIOUS_IMAGES_ANNOTATION: recorded}}});
        let text = object["metadata"].to_string();
        let previous = BTreeMap::from([("app", "a:v1.0.1")]);

        let operation =
            annotation_operation(metadata(&text).as_ref(), "/metadata", &previous).unwrap();

        let patched = apply(&object, operation);
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
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":"pod"}}"#;

        let error = parse_review(body).unwrap_err();

        assert!(matches!(error, ReviewError::InvalidRequest(_)));
        assert!(
            error.to_string().contains("expected a Kubernetes object"),
            "{error}"
        );
    }

    #[test]
    fn parse_rejects_missing_uid() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}}"#;

        let error = parse_review(body).unwrap_err();

        assert_eq!(
            error.to_string(),
            "AdmissionReview request is invalid: the uid field is missing; the API server always sends it"
        );
    }

    #[test]
    fn parse_splits_syntax_and_shape_errors() {
        assert!(matches!(
            parse_review(br#"{"apiVersion":"#),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            parse_review(br#"{"request":{"dryRun":"yes"}}"#),
            Err(ReviewError::InvalidRequest(_))
        ));
    }

    #[test]
    fn parse_borrows_plain_strings() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"mojaloop","object":{"spec":{"containers":[{"name":"app","image":"a:v1"}]}}}}"#;

        let request = parse_review(body).unwrap();

        assert!(matches!(request.uid, Cow::Borrowed("u-1")));
        assert_eq!(request.namespace(), "mojaloop");
        let spec = request.object.as_ref().unwrap().spec.as_ref().unwrap();
        assert!(matches!(spec.containers.as_ref().unwrap()[0].image, Some(Cow::Borrowed("a:v1"))));
    }

    #[test]
    fn response_patch_is_base64() {
        let patch = Patch(vec![PatchOperation::Replace(ReplaceOperation {
            path: parse_pointer("/spec/containers/0/image").unwrap(),
            value: json!("a:v1.0.1"),
        })]);
        let response = Response {
            uid: "u-1".to_owned(),
            warnings: vec!["w".to_owned()],
            patch: Some(serde_json::to_vec(&patch).unwrap()),
        };

        let body: Value = serde_json::from_slice(&response_body(response).unwrap()).unwrap();

        assert_eq!(
            body,
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "u-1",
                    "allowed": true,
                    "warnings": ["w"],
                    "patchType": "JSONPatch",
                    "patch": "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9zcGVjL2NvbnRhaW5lcnMvMC9pbWFnZSIsInZhbHVlIjoiYTp2MS4wLjEifV0=",
                }
            })
        );
    }

    #[test]
    fn unchanged_response_is_minimal() {
        let response = Response {
            uid: "u-2".to_owned(),
            warnings: Vec::new(),
            patch: None,
        };

        let body: Value = serde_json::from_slice(&response_body(response).unwrap()).unwrap();

        assert_eq!(body["response"], json!({"uid": "u-2", "allowed": true}));
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
