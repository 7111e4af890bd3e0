//! Two tests that share one control plane through `Cluster::shared`, each in
//! a namespace of its own.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use testsupport::Cluster;

async fn create_config_map(namespace: &str) {
    let cluster = Cluster::shared().await.expect("the shared control plane starts");
    cluster
        .create_namespace(namespace, &[])
        .await
        .expect("the namespace is created");
    let config_map: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "settings" },
        "data": { "namespace": namespace },
    }))
    .expect("a ConfigMap");
    let created = Api::<ConfigMap>::namespaced(cluster.client(), namespace)
        .create(&PostParams::default(), &config_map)
        .await;
    if let Err(error) = created {
        cluster.print_logs();
        panic!("creating a ConfigMap in {namespace}: {error}");
    }
}

#[tokio::test]
async fn first_test_uses_shared_cluster() {
    create_config_map("shared-first").await;
}

#[tokio::test]
async fn second_test_uses_shared_cluster() {
    create_config_map("shared-second").await;
}
