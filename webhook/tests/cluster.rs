//! The webhook behind a real kube-apiserver (the local test stack): the manifests apply,
//! the certs script's caBundle is accepted, and the API server calls the webhook and stores
//! the rewritten objects. The approvals ConfigMap's creation, edits and deletion reach the
//! webhook within seconds.
//!
//! The webhook runs in this process with the ServiceAccount token of its manifests, so the
//! Role is enforced. The MutatingWebhookConfiguration is the one of the manifests, with
//! `clientConfig.url` on 127.0.0.1 instead of the Service, since no kubelet runs its Pods.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::crate_dir;
use serde_json::{Value, json};
use testsupport::cluster::Cluster;
use testsupport::wait::eventually;
use tokio::net::TcpListener;
use webhook::admission::PREVIOUS_IMAGES_ANNOTATION;
use webhook::options::Options;

const SYSTEM_NAMESPACE: &str = "image-patch-system";
const WEBHOOK_CONFIG: &str = "image-patch-webhook";
const BASE: &str = "mojaloop/quoting-service:v10.4.0";
const PATCHED: &str = "mojaloop/quoting-service:v10.4.0.2-patch";

const APPROVAL: &str = "approvals:
  - image: mojaloop/quoting-service
    version: v10.4.0
    patch: v10.4.0.2-patch
";

/// Runs `kubectl` as the admin with the tools' kubectl, returning stdout and stderr.
async fn kubectl(cluster: &Cluster, args: &[&str]) -> Result<(String, String)> {
    let output = cluster
        .kubectl_command()
        .args(args)
        .output()
        .await
        .context("kubectl runs")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("kubectl {args:?} failed: {stderr}");
    }
    Ok((stdout, stderr))
}

/// Applies `manifest` (YAML or JSON) from a file and returns kubectl's stderr (warnings).
async fn apply(cluster: &Cluster, dir: &Path, manifest: &str) -> Result<String> {
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, manifest)?;
    let (_, stderr) = kubectl(cluster, &["apply", "-f", path.to_str().unwrap()]).await?;
    Ok(stderr)
}

async fn get_json(cluster: &Cluster, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let (stdout, _) = kubectl(cluster, &args).await?;
    Ok(serde_json::from_str(&stdout)?)
}

/// Runs the certs script against the cluster and returns its output.
async fn run_certs_script(cluster: &Cluster, dir: &Path) -> Result<String> {
    let script = crate_dir().join("../certs-script/certs.sh");
    let path = format!(
        "{}:{}",
        cluster.tools().dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new("bash")
        .arg(script)
        .args(["--ip", "127.0.0.1", "--dir"])
        .arg(dir)
        .env("PATH", path)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "certs.sh failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// A Deployment of quoting-service at the base version, as a chart would apply it.
fn deployment(namespace: &str) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "quoting-service", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "quoting-service"}},
            "template": {
                "metadata": {"labels": {"app": "quoting-service"}},
                "spec": {
                    "initContainers": [{"name": "wait", "image": "mojaloop/quoting-service:v10.3.0"}],
                    "containers": [{"name": "app", "image": BASE}]
                }
            }
        }
    })
    .to_string()
}

fn pod(namespace: &str, name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": BASE}]}
    })
    .to_string()
}

/// Returns the image the API server would store for a Pod in `namespace`, by a server-side
/// dry run.
async fn dry_run_image(cluster: &Cluster, dir: &Path, namespace: &str) -> Result<String> {
    let path = dir.join("dry-run-pod.json");
    std::fs::write(&path, pod(namespace, "dry-run"))?;
    let (stdout, _) = kubectl(
        cluster,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            path.to_str().unwrap(),
        ],
    )
    .await?;
    let object: Value = serde_json::from_str(&stdout)?;
    Ok(object["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Parses the previous-images annotation of `object`.
fn previous_images(object: &Value) -> Result<Value> {
    let recorded = object["metadata"]["annotations"][PREVIOUS_IMAGES_ANNOTATION]
        .as_str()
        .context("previous-images annotation")?;
    Ok(serde_json::from_str(recorded)?)
}

/// Serves `POST /mirror`, a stand-in for a policy engine that sends Docker Hub images
/// through the pull-through mirror `mirror.gcr.io`.
fn mirror_router() -> axum::Router {
    axum::Router::new().route("/mirror", axum::routing::post(mirror_review))
}

async fn mirror_review(body: axum::body::Bytes) -> axum::Json<Value> {
    let request = webhook::admission::parse_review(&body).expect("an AdmissionReview");
    let object = request.object.as_ref().expect("object");
    let kind = request.kind.as_ref().expect("kind");
    let location = webhook::images::pod_spec_location(kind).expect("handled kind");

    let mut operations = Vec::new();
    for field in webhook::images::image_fields(object, location) {
        let first_part = field.image.split('/').next().unwrap_or_default();
        let has_registry = first_part.contains('.') || first_part.contains(':');
        if !has_registry {
            operations.push(json!({"op": "replace", "path": field.pointer, "value": format!("mirror.gcr.io/{}", field.image)}));
        }
    }
    let mut response = json!({"uid": request.uid, "allowed": true});
    if !operations.is_empty() {
        let patch = serde_json::to_vec(&operations).expect("patch serializes");
        response["patchType"] = json!("JSONPatch");
        response["patch"] = serde_json::to_value(k8s_openapi::ByteString(patch)).expect("base64");
    }
    axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

/// A MutatingWebhookConfiguration named `name` that calls the mirror on `port` for
/// Deployments and Pods in namespaces labelled `mirror=true`.
fn mirror_webhook_config(name: &str, port: u16, ca_bundle: &str) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "mirror.policy.example.org",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mirror"), "caBundle": ca_bundle},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchLabels": {"mirror": "true"}},
            "rules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]},
                {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}
            ]
        }]
    })
    .to_string()
}

fn set_approvals_command(document: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "image-patch-approvals", "namespace": SYSTEM_NAMESPACE},
        "data": {"approvals.yaml": document}
    })
    .to_string()
}

#[tokio::test]
async fn webhook_behind_real_apiserver() -> Result<()> {
    let cluster = Cluster::start().await?;
    let dir = tempfile::tempdir()?;
    let manifests = crate_dir().join("../manifests");

    // Every entry point renders and passes server-side validation; the default one is applied.
    for entry in ["", "overlays/pods-only"] {
        let path = manifests.join(entry);
        kubectl(
            &cluster,
            &["apply", "--dry-run=client", "-k", path.to_str().unwrap()],
        )
        .await?;
    }
    kubectl(
        &cluster,
        &["apply", "--server-side", "-k", manifests.to_str().unwrap()],
    )
    .await?;

    // Point both webhooks at this process instead of the Service.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let url_patch = json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig", "value": {"url": format!("https://127.0.0.1:{port}/mutate")}},
        {"op": "replace", "path": "/webhooks/1/clientConfig", "value": {"url": format!("https://127.0.0.1:{port}/audit")}},
    ]);
    kubectl(
        &cluster,
        &[
            "patch",
            "mutatingwebhookconfiguration",
            WEBHOOK_CONFIG,
            "--type=json",
            "-p",
            &url_patch.to_string(),
        ],
    )
    .await?;

    // The certs script creates the CA and certificate, the Secrets, and the caBundle. A
    // second run changes nothing.
    let certs = dir.path().join("certs");
    let first = run_certs_script(&cluster, &certs).await?;
    assert!(first.contains("CA created"), "{first}");
    assert!(
        first.contains(
            "caBundle of mutatingwebhookconfiguration/image-patch-webhook written (2 of 2"
        ),
        "{first}"
    );
    let second = run_certs_script(&cluster, &certs).await?;
    assert!(second.contains("CA kept"), "{second}");
    assert!(second.contains("serving certificate kept"), "{second}");
    assert!(second.contains("unchanged (2 webhooks)"), "{second}");
    let secret = get_json(
        &cluster,
        &[
            "-n",
            SYSTEM_NAMESPACE,
            "get",
            "secret",
            "image-patch-webhook-tls",
        ],
    )
    .await?;
    assert_eq!(secret["type"], "kubernetes.io/tls");

    // The webhook, with the ServiceAccount of the manifests.
    let client = cluster
        .service_account_client(SYSTEM_NAMESPACE, "image-patch-webhook")
        .await?;
    let options = Options::try_parse_from([
        "image-patch-webhook".as_ref(),
        "--tls-cert".as_ref(),
        certs.join("tls.crt").as_os_str(),
        "--tls-key".as_ref(),
        certs.join("tls.key").as_os_str(),
        "--namespace".as_ref(),
        SYSTEM_NAMESPACE.as_ref(),
    ])?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(webhook::app::serve(
        options,
        listener,
        Some(client),
        async {
            let _ = stopped.await;
        },
    ));

    let mut result = ready_without_configmap(&cluster, &certs, port).await;
    if result.is_ok() {
        result = exercise(&cluster, dir.path()).await;
    }
    if result.is_ok() {
        result = exercise_with_mirror(&cluster, dir.path(), &certs).await;
    }

    let _ = stop.send(());
    server.await?.context("webhook server")?;
    result
}

/// Checks that the manifests did not create the approvals ConfigMap and that the webhook
/// becomes ready without it.
async fn ready_without_configmap(cluster: &Cluster, certs: &Path, port: u16) -> Result<()> {
    let (names, _) = kubectl(
        cluster,
        &["-n", SYSTEM_NAMESPACE, "get", "configmaps", "-o", "name"],
    )
    .await?;
    assert!(
        !names.contains("image-patch-approvals"),
        "the manifests created the approvals ConfigMap: {names}"
    );

    // reqwest is built without a crypto provider of its own; ring is the one compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bundle = std::fs::read(certs.join("ca-bundle.crt"))?;
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&bundle)?)
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("https://127.0.0.1:{port}/readyz");
    eventually(
        "readiness without an approvals ConfigMap",
        Duration::from_secs(15),
        || async {
            let response = client.get(&url).send().await?;
            Ok(response.status() == reqwest::StatusCode::OK)
        },
    )
    .await?;
    Ok(())
}

async fn exercise(cluster: &Cluster, dir: &Path) -> Result<()> {
    // The namespace enforces the restricted Pod Security profile, so the webhook's own Pods
    // are only created if the Deployment complies with it.
    eventually(
        "the webhook's two Pods",
        Duration::from_secs(30),
        move || async move {
            let pods = get_json(
                cluster,
                &[
                    "-n",
                    SYSTEM_NAMESPACE,
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/name=image-patch-webhook",
                ],
            )
            .await?;
            Ok(pods["items"]
                .as_array()
                .is_some_and(|items| items.len() == 2))
        },
    )
    .await?;

    cluster
        .create_namespace("payments", &[("patches.mojaloop.io/enabled", "true")])
        .await?;
    cluster
        .create_namespace(
            "audited",
            &[
                ("patches.mojaloop.io/enabled", "true"),
                ("patches.mojaloop.io/mode", "audit"),
            ],
        )
        .await?;
    cluster.create_namespace("elsewhere", &[]).await?;

    // Without the ConfigMap nothing is rewritten. Creating it with an approval reaches the
    // webhook within seconds.
    assert_eq!(dry_run_image(cluster, dir, "payments").await?, BASE);
    apply(cluster, dir, &set_approvals_command(APPROVAL)).await?;
    let delay = eventually(
        "the approval to take effect",
        Duration::from_secs(15),
        move || async move { Ok(dry_run_image(cluster, dir, "payments").await? == PATCHED) },
    )
    .await?;
    assert!(delay < Duration::from_secs(10), "approval took {delay:?}");

    // A Deployment is stored rewritten, with a warning that kubectl shows.
    let warnings = apply(cluster, dir, &deployment("payments")).await?;
    assert!(
        warnings.contains(&format!(
            "Warning: image-patch: container \"app\" image {BASE} rewritten to {PATCHED}"
        )),
        "{warnings}"
    );
    let stored = get_json(
        cluster,
        &["-n", "payments", "get", "deployment", "quoting-service"],
    )
    .await?;
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        PATCHED
    );
    assert_eq!(
        stored["spec"]["template"]["spec"]["initContainers"][0]["image"],
        "mojaloop/quoting-service:v10.3.0"
    );
    assert_eq!(previous_images(&stored)?, json!({"app": BASE}));

    // The controller-manager creates its ReplicaSet and Pod from the rewritten template.
    eventually(
        "the Deployment's Pod",
        Duration::from_secs(30),
        move || async move {
            let pods = get_json(
                cluster,
                &["-n", "payments", "get", "pods", "-l", "app=quoting-service"],
            )
            .await?;
            Ok(pods["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty()))
        },
    )
    .await?;
    let pods = get_json(
        cluster,
        &["-n", "payments", "get", "pods", "-l", "app=quoting-service"],
    )
    .await?;
    let created = &pods["items"][0];
    assert_eq!(created["spec"]["containers"][0]["image"], PATCHED);
    assert_eq!(previous_images(created)?, json!({"app": BASE}));

    // A document that cannot be parsed keeps the last good approvals in force.
    apply(
        cluster,
        dir,
        &set_approvals_command("approvals: [ {image: unterminated"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dry_run_image(cluster, dir, "payments").await?, PATCHED);

    // Audit mode warns and stores the object unchanged, and other namespaces are not touched.
    let audit_warnings = apply(cluster, dir, &pod("audited", "audited")).await?;
    assert!(
        audit_warnings.contains("(audit mode: unchanged)"),
        "{audit_warnings}"
    );
    let audited = get_json(cluster, &["-n", "audited", "get", "pod", "audited"]).await?;
    assert_eq!(audited["spec"]["containers"][0]["image"], BASE);
    assert_eq!(dry_run_image(cluster, dir, "elsewhere").await?, BASE);

    // Removing the approval rolls the Deployment back on the next apply of the same chart.
    apply(cluster, dir, &set_approvals_command("approvals: []\n")).await?;
    eventually(
        "the removal to take effect",
        Duration::from_secs(15),
        move || async move { Ok(dry_run_image(cluster, dir, "payments").await? == BASE) },
    )
    .await?;
    apply(cluster, dir, &deployment("payments")).await?;
    let rolled_back = get_json(
        cluster,
        &["-n", "payments", "get", "deployment", "quoting-service"],
    )
    .await?;
    assert_eq!(
        rolled_back["spec"]["template"]["spec"]["containers"][0]["image"],
        BASE
    );
    Ok(())
}

/// Runs a registry-mirror webhook beside this one, first and then last in the API server's
/// order (configurations are called by name), and checks that both orders store the same
/// image: the mirror's registry with the approved patch.
async fn exercise_with_mirror(cluster: &Cluster, dir: &Path, certs: &Path) -> Result<()> {
    let approvals = format!("{APPROVAL}registries:\n  mirror.gcr.io: docker.io\n");
    apply(cluster, dir, &set_approvals_command(&approvals)).await?;
    cluster
        .create_namespace(
            "mirrored",
            &[("patches.mojaloop.io/enabled", "true"), ("mirror", "true")],
        )
        .await?;
    eventually(
        "the approval to take effect",
        Duration::from_secs(15),
        move || async move { Ok(dry_run_image(cluster, dir, "payments").await? == PATCHED) },
    )
    .await?;

    let certified =
        webhook::tls::certified_key_from_files(&certs.join("tls.crt"), &certs.join("tls.key"))?;
    let resolver = std::sync::Arc::new(webhook::tls::CertificateResolver::new(certified));
    let tls = std::sync::Arc::new(webhook::tls::server_config(resolver)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mirror = tokio::spawn(webhook::server::serve(
        listener,
        tls,
        mirror_router(),
        webhook::server::ServerLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let ca_bundle = {
        use base64::Engine;
        base64::prelude::BASE64_STANDARD.encode(std::fs::read(certs.join("ca-bundle.crt"))?)
    };

    let mut stored = Vec::new();
    for name in ["aaa-registry-mirror", "zzz-registry-mirror"] {
        apply(cluster, dir, &mirror_webhook_config(name, port, &ca_bundle)).await?;
        let manifest = deployment("mirrored")
            .replace("quoting-service\"", &format!("quoting-service-{name}\""));
        apply(cluster, dir, &manifest).await?;
        let deployment_name = format!("quoting-service-{name}");
        let object = get_json(
            cluster,
            &["-n", "mirrored", "get", "deployment", &deployment_name],
        )
        .await?;
        stored.push(
            object["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        kubectl(cluster, &["delete", "mutatingwebhookconfiguration", name]).await?;
    }

    let _ = stop.send(());
    mirror.await?;
    assert_eq!(
        stored,
        ["mirror.gcr.io/mojaloop/quoting-service:v10.4.0.2-patch"; 2]
    );

    // Deleting the ConfigMap withdraws every approval, and creating it again restores them.
    kubectl(
        cluster,
        &[
            "-n",
            SYSTEM_NAMESPACE,
            "delete",
            "configmap",
            "image-patch-approvals",
        ],
    )
    .await?;
    eventually(
        "the deletion to take effect",
        Duration::from_secs(15),
        move || async move { Ok(dry_run_image(cluster, dir, "payments").await? == BASE) },
    )
    .await?;
    apply(cluster, dir, &set_approvals_command(APPROVAL)).await?;
    eventually(
        "the new ConfigMap to take effect",
        Duration::from_secs(15),
        move || async move { Ok(dry_run_image(cluster, dir, "payments").await? == PATCHED) },
    )
    .await?;
    Ok(())
}
