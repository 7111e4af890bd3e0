//! The parts of a workload object that the webhook reads, and where each handled kind keeps
//! its pod spec.
//!
//! ```text
//!   Pod                                   /spec
//!   Deployment, StatefulSet, DaemonSet,   /spec/template/spec
//!   ReplicaSet, Job
//!   CronJob                               /spec/jobTemplate/spec/template/spec
//! ```
//!
//! The object is read into [`ObjectView`], which keeps only metadata annotations and the
//! containers' names and images, borrowed from the request body where the JSON has no
//! escapes. Every other field is skipped while parsing, so a review never builds a tree of
//! the whole object. The patch names only the fields it changes, so the API server keeps the rest.

use std::borrow::Cow;

use kube::core::GroupVersionKind;
use serde::{Deserialize, Deserializer};

/// Reads an optional string, borrowed from the input when it has no escapes. Serde borrows
/// a `Cow<str>` only when it is the field's own type, not inside an `Option`, so the string
/// goes through a one-field wrapper that is.
pub(crate) fn optional_text<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|text| text.0))
}

/// The fields of a Kubernetes object that a review needs.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a Kubernetes object")]
pub struct ObjectView<'a> {
    /// The object's metadata.
    #[serde(borrow, default)]
    pub metadata: Option<MetadataView<'a>>,
    /// The object's spec: a pod spec for a Pod, or a spec that contains a pod template.
    #[serde(borrow, default)]
    pub spec: Option<SpecView<'a>>,
}

/// The metadata fields a review needs.
#[derive(Debug, Default, Deserialize)]
pub struct MetadataView<'a> {
    /// `None` when the object has no annotations or they are `null`.
    #[serde(borrow, default)]
    pub annotations: Option<AnnotationsView<'a>>,
}

/// The one annotation a review reads.
#[derive(Debug, Default, Deserialize)]
pub struct AnnotationsView<'a> {
    /// The previous-images annotation, as recorded by an earlier review.
    #[serde(
        borrow,
        default,
        deserialize_with = "optional_text",
        rename = "patches.mojaloop.io/previous-images"
    )]
    pub previous_images: Option<Cow<'a, str>>,
}

/// The union of the spec fields that lead to containers, for every handled kind: a pod spec
/// has container lists, a workload's spec has `template`, and a CronJob's has `jobTemplate`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    /// A pod spec's init containers.
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    /// A pod spec's containers.
    #[serde(borrow, default)]
    pub containers: Option<Vec<ContainerView<'a>>>,
    /// A pod spec's ephemeral containers.
    #[serde(borrow, default)]
    pub ephemeral_containers: Option<Vec<ContainerView<'a>>>,
    /// The pod template of a Deployment, StatefulSet, DaemonSet, ReplicaSet or Job.
    #[serde(borrow, default)]
    pub template: Option<Box<TemplateView<'a>>>,
    /// The Job template of a CronJob.
    #[serde(borrow, default)]
    pub job_template: Option<Box<TemplateView<'a>>>,
}

/// A pod template, or a CronJob's Job template: metadata and a spec.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateView<'a> {
    /// The template's metadata.
    #[serde(borrow, default)]
    pub metadata: Option<MetadataView<'a>>,
    /// The template's spec.
    #[serde(borrow, default)]
    pub spec: Option<SpecView<'a>>,
}

/// A container's name and image.
#[derive(Debug, Default, Deserialize)]
pub struct ContainerView<'a> {
    /// The container's name, unique across the lists of one pod.
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    /// The image as written; `None` when absent, which the API server rejects itself.
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub image: Option<Cow<'a, str>>,
}

/// The depth at which a kind keeps its pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// `spec`: a Pod.
    Pod,
    /// `spec.template.spec`: the workload kinds and Job.
    Template,
    /// `spec.jobTemplate.spec.template.spec`: a CronJob.
    JobTemplate,
}

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
    depth: Depth,
}

impl PodSpecLocation {
    /// Returns the pod template of `object`, `None` for a Pod or when it is absent.
    pub fn template<'v, 'a>(&self, object: &'v ObjectView<'a>) -> Option<&'v TemplateView<'a>> {
        let spec = object.spec.as_ref()?;
        match self.depth {
            Depth::Pod => None,
            Depth::Template => spec.template.as_deref(),
            Depth::JobTemplate => spec
                .job_template
                .as_deref()?
                .spec
                .as_ref()?
                .template
                .as_deref(),
        }
    }

    /// Returns the pod spec of `object`, `None` when it is absent.
    pub fn pod_spec<'v, 'a>(&self, object: &'v ObjectView<'a>) -> Option<&'v SpecView<'a>> {
        match self.depth {
            Depth::Pod => object.spec.as_ref(),
            Depth::Template | Depth::JobTemplate => self.template(object)?.spec.as_ref(),
        }
    }
}

/// Returns where `kind` keeps its pod spec, or `None` for a kind that is not handled.
pub fn pod_spec_location(kind: &GroupVersionKind) -> Option<PodSpecLocation> {
    let template = PodSpecLocation {
        spec: "/spec/template/spec",
        template_metadata: Some("/spec/template/metadata"),
        rewrite_unchanged_on_update: true,
        depth: Depth::Template,
    };
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => Some(PodSpecLocation {
            spec: "/spec",
            template_metadata: None,
            rewrite_unchanged_on_update: false,
            depth: Depth::Pod,
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
            depth: Depth::JobTemplate,
        }),
        _ => None,
    }
}

/// The container lists of a pod spec, in the order their images are reported.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

impl<'a> SpecView<'a> {
    /// Returns the container list named `list` (one of [`CONTAINER_LISTS`]).
    pub fn list(&self, list: &str) -> Option<&[ContainerView<'a>]> {
        let containers = match list {
            "initContainers" => &self.init_containers,
            "containers" => &self.containers,
            "ephemeralContainers" => &self.ephemeral_containers,
            _ => return None,
        };
        containers.as_deref()
    }

    /// Returns every container that has an image, with its list and index, in the order
    /// of [`CONTAINER_LISTS`].
    pub fn images(&self) -> impl Iterator<Item = ImageSlot<'_, 'a>> {
        CONTAINER_LISTS.into_iter().flat_map(move |list| {
            self.list(list)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(move |(index, container)| {
                    let image = container.image.as_deref()?;
                    Some(ImageSlot {
                        list,
                        index,
                        container,
                        image,
                    })
                })
        })
    }

    /// Returns the image of container `index` in `list`, if it has one.
    pub fn image_at(&self, list: &str, index: usize) -> Option<&str> {
        self.list(list)?.get(index)?.image.as_deref()
    }
}

/// One container's image, borrowed from a [`SpecView`].
#[derive(Debug, Clone, Copy)]
pub struct ImageSlot<'v, 'a> {
    /// The container list.
    pub list: &'static str,
    /// The container's index in its list.
    pub index: usize,
    /// The container.
    pub container: &'v ContainerView<'a>,
    /// The container's image.
    pub image: &'v str,
}

impl ImageSlot<'_, '_> {
    /// Copies the slot into an owned [`ImageField`] under the pod spec at `spec_pointer`.
    pub fn to_field(self, spec_pointer: &str) -> ImageField {
        ImageField {
            pointer: format!("{spec_pointer}/{}/{}/image", self.list, self.index),
            list: self.list,
            container: self.container.name.clone().into_owned(),
            image: self.image.to_owned(),
        }
    }
}

/// One container's image field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageField {
    /// JSON pointer of the `image` field (`/spec/template/spec/containers/0/image`).
    pub pointer: String,
    /// The container list (`containers`, `initContainers` or `ephemeralContainers`).
    pub list: &'static str,
    /// The container's name.
    pub container: String,
    /// The image as written.
    pub image: String,
}

/// Lists every container image of the pod spec at `location` in `object`.
/// Containers without an image are skipped: the API server rejects them itself.
pub fn image_fields(object: &ObjectView<'_>, location: PodSpecLocation) -> Vec<ImageField> {
    location
        .pod_spec(object)
        .map(|spec| {
            spec.images()
                .map(|slot| slot.to_field(location.spec))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn gvk(group: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind::gvk(group, "v1", kind)
    }

    fn view(text: &str) -> ObjectView<'_> {
        serde_json::from_str(text).unwrap()
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

    /// The view must find the containers at each location's JSON pointer, because the patch
    /// addresses them by that pointer.
    #[rstest]
    #[case("", "Pod")]
    #[case("apps", "Deployment")]
    #[case("batch", "Job")]
    #[case("batch", "CronJob")]
    fn view_agrees_with_pointer(#[case] group: &str, #[case] kind: &str) {
        let location = pod_spec_location(&gvk(group, kind)).unwrap();
        let mut object = json!({});
        let pod_spec = json!({"containers": [{"name": "app", "image": "a:v1.0.0"}]});
        let mut target = &mut object;
        for part in location.spec.trim_start_matches('/').split('/') {
            target = &mut target[part];
        }
        *target = pod_spec;

        let text = object.to_string();
        let fields = image_fields(&view(&text), location);

        assert_eq!(fields.len(), 1);
        assert_eq!(object.pointer(&fields[0].pointer), Some(&json!("a:v1.0.0")));
    }

    #[test]
    fn fields_cover_every_container_list() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
            "containers": [{"name": "app", "image": "mojaloop/quoting-service:v10.4.0"}, {"name": "sidecar", "image": "envoy:v1"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox:1.37"}],
        }});
        let location = pod_spec_location(&gvk("", "Pod")).unwrap();
        let text = pod.to_string();

        let fields = image_fields(&view(&text), location);

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
        let pod_location = pod_spec_location(&gvk("", "Pod")).unwrap();
        let deployment_location = pod_spec_location(&gvk("apps", "Deployment")).unwrap();
        let text = pod.to_string();

        assert!(image_fields(&view(&text), pod_location).is_empty());
        assert!(image_fields(&view(&text), deployment_location).is_empty());
    }

    #[test]
    fn view_keeps_escaped_annotation() {
        let pod = json!({
            "metadata": {"annotations": {"team": "payments", "patches.mojaloop.io/previous-images": "{\"app\":\"a:v1\"}"}},
            "spec": {"volumes": [{"name": "data"}], "containers": [{"name": "app", "image": "a:v1", "env": [{"name": "X"}]}]},
            "status": {"phase": "Pending"},
        });
        let text = pod.to_string();

        let object = view(&text);

        let annotations = object.metadata.unwrap().annotations.unwrap();
        assert_eq!(annotations.previous_images.as_deref(), Some(r#"{"app":"a:v1"}"#));
        assert_eq!(object.spec.unwrap().image_at("containers", 0), Some("a:v1"));
    }
}
