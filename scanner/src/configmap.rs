//! Reads and writes of the scanner's ConfigMaps with optimistic concurrency: a write
//! names the `resourceVersion` it read, and the API server rejects it with a conflict
//! when another writer came first.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// A ConfigMap's data as read, with the object it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned {
    /// The `data` field, empty when the ConfigMap does not exist.
    pub data: BTreeMap<String, String>,
    /// The object as read, whose `resourceVersion` conditions the next write. `None` when it does not exist yet.
    pub object: Option<ConfigMap>,
}

impl Versioned {
    /// Returns the `resourceVersion` read, or `None` when the ConfigMap does not exist.
    pub fn resource_version(&self) -> Option<&str> {
        self.object.as_ref()?.metadata.resource_version.as_deref()
    }
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored, with the new `resourceVersion`.
    Stored(String),
    /// Another writer changed or created the ConfigMap since it was read.
    Conflict,
}

/// One named ConfigMap in the controller namespace.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    name: String,
}

impl ConfigMapStore {
    /// Addresses ConfigMap `name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_string() }
    }

    /// Returns the ConfigMap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the ConfigMap. A missing one reads as empty, with no `resourceVersion`.
    pub async fn read(&self) -> Result<Versioned, kube::Error> {
        match self.api.get_opt(&self.name).await? {
            Some(config_map) => Ok(Versioned { data: config_map.data.clone().unwrap_or_default(), object: Some(config_map) }),
            None => Ok(Versioned::default()),
        }
    }

    /// Writes `data` if the ConfigMap is still as `base` read it, creating it when `base` found none.
    /// The labels and annotations of an existing ConfigMap are kept.
    pub async fn write(&self, data: BTreeMap<String, String>, base: &Versioned) -> Result<Written, kube::Error> {
        let params = PostParams { field_manager: Some(crate::SCANNER_NAME.to_string()), ..PostParams::default() };
        let result = match &base.object {
            Some(existing) => {
                let mut config_map = existing.clone();
                config_map.data = Some(data);
                config_map.metadata.managed_fields = None;
                self.api.replace(&self.name, &params, &config_map).await
            }
            None => {
                let config_map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), crate::SCANNER_NAME.to_string())])),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                self.api.create(&params, &config_map).await
            }
        };
        match result {
            Ok(stored) => Ok(Written::Stored(stored.metadata.resource_version.unwrap_or_default())),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Written::Conflict),
            Err(error) => Err(error),
        }
    }
}
