//! Locations of the pod spec of each handled kind, and of the image fields inside it, as
//! JSON pointers.
//!
//! ```text
//!   Pod                                   /spec
//!   Deployment, StatefulSet, DaemonSet,   /spec/template/spec
//!   ReplicaSet, Job
//!   CronJob                               /spec/jobTemplate/spec/template/spec
//! ```

use kube::core::GroupVersionKind;
use serde_json::Value;

/// Location of the pod spec in an object of a handled kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSpecLocation {
    /// JSON pointer of the pod spec.
    pub spec: &'static str,
    /// JSON pointer of the pod template's metadata; `None` for a Pod.
    pub template_metadata: Option<&'static str>,
    /// Whether an UPDATE may rewrite images that it does not change. False for Pods, where a
    /// new image restarts the container, and for Jobs, whose pod template is immutable so
    /// that the API server would reject the update.
    pub rewrite_unchanged_on_update: bool,
}

/// Returns where `kind` keeps its pod spec, or `None` for a kind that is not handled.
pub fn pod_spec_location(kind: &GroupVersionKind) -> Option<PodSpecLocation> {
    let template = PodSpecLocation {
        spec: "/spec/template/spec",
        template_metadata: Some("/spec/template/metadata"),
        rewrite_unchanged_on_update: true,
    };
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => Some(PodSpecLocation {
            spec: "/spec",
            template_metadata: None,
            rewrite_unchanged_on_update: false,
        }),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => Some(template),
        ("batch", "Job") => Some(PodSpecLocation {
            rewrite_unchanged_on_update: false,
            ..template
        }),
        ("batch", "CronJob") => Some(PodSpecLocation {
            spec: "/spec/jobTemplate/spec/template/spec",
            template_metadata: Some("/spec/jobTemplate/spec/template/metadata"),
            rewrite_unchanged_on_update: true,
        }),
        _ => None,
    }
}

/// The container lists of a pod spec, in the order their images are reported.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// One container's image field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageField {
    /// JSON pointer of the `image` field (`/spec/template/spec/containers/0/image`).
    pub pointer: String,
    /// The container list (`containers`, `initContainers` or `ephemeralContainers`).
    pub list: &'static str,
    /// The container's name, unique across the lists of one pod.
    pub container: String,
    /// The image as written.
    pub image: String,
}

/// Lists every container image of the pod spec at `spec_pointer` in `object`.
/// Containers without a string `image` are skipped: the API server rejects them itself.
pub fn image_fields(object: &Value, spec_pointer: &str) -> Vec<ImageField> {
    let Some(spec) = object.pointer(spec_pointer) else {
        return Vec::new();
    };

    let mut fields = Vec::new();
    for list in CONTAINER_LISTS {
        let Some(containers) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (index, container) in containers.iter().enumerate() {
            let Some(image) = container.get("image").and_then(Value::as_str) else {
                continue;
            };
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            fields.push(ImageField {
                pointer: format!("{spec_pointer}/{list}/{index}/image"),
                list,
                container: name.to_owned(),
                image: image.to_owned(),
            });
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn gvk(group: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind::gvk(group, "v1", kind)
    }

    #[rstest]
    #[case("", "Pod", Some("/spec"))]
    #[case("apps", "Deployment", Some("/spec/template/spec"))]
    #[case("apps", "StatefulSet", Some("/spec/template/spec"))]
    #[case("apps", "DaemonSet", Some("/spec/template/spec"))]
    #[case("apps", "ReplicaSet", Some("/spec/template/spec"))]
    #[case("batch", "Job", Some("/spec/template/spec"))]
    #[case("batch", "CronJob", Some("/spec/jobTemplate/spec/template/spec"))]
    #[case("", "ConfigMap", None)]
    #[case("example.org", "Deployment", None)]
    #[case("autoscaling", "Scale", None)]
    fn location_by_kind(#[case] group: &str, #[case] kind: &str, #[case] spec: Option<&str>) {
        assert_eq!(
            pod_spec_location(&gvk(group, kind)).map(|location| location.spec),
            spec
        );
    }

    #[test]
    fn fields_cover_every_container_list() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
            "containers": [{"name": "app", "image": "mojaloop/quoting-service:v10.4.0"}, {"name": "sidecar", "image": "envoy:v1"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox:1.37"}],
        }});

        let fields = image_fields(&pod, "/spec");

        let pointers: Vec<&str> = fields.iter().map(|field| field.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/spec/initContainers/0/image",
                "/spec/containers/0/image",
                "/spec/containers/1/image",
                "/spec/ephemeralContainers/0/image"
            ]
        );
        assert_eq!(fields[2].container, "sidecar");
        assert_eq!(fields[2].image, "envoy:v1");
        assert_eq!(fields[3].list, "ephemeralContainers");
    }

    #[test]
    fn fields_skip_missing_image_and_spec() {
        let pod = json!({"spec": {"containers": [{"name": "app"}]}});

        assert!(image_fields(&pod, "/spec").is_empty());
        assert!(image_fields(&pod, "/spec/template/spec").is_empty());
    }
}
