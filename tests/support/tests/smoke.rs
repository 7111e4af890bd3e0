//! Smoke test of the local test stack: it starts every component, drives each
//! one the way the product's tests will, and checks that stopping the stack
//! leaves no process behind.
//!
//! The control-plane test needs the tools of `tests/tools/build.sh` and fails,
//! without skipping, when they are missing.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testsupport::fault_proxy::{Fault, LinkStyle, PathKind};
use testsupport::seed;
use testsupport::slack::Reply;
use testsupport::{CertifiedKey, Cluster, FaultProxy, Registry, SlackReceiver};

const WAIT: Duration = Duration::from_secs(60);

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smoke-chart")
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the Deployment `name` has a ReplicaSet and `replicas` Pods, and
/// returns the Pods.
async fn wait_for_pods(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    replicas: usize,
) -> Result<Vec<Pod>> {
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client(), namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), namespace);
    let owned_by = |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
                    kind: &str,
                    owner: &str| {
        owners
            .iter()
            .any(|reference| reference.kind == kind && reference.name == owner)
    };
    let replica_set = eventually(&format!("a ReplicaSet of {namespace}/{name}"), || async {
        let list = replica_sets.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|set| owned_by(set.owner_references(), "Deployment", name)))
    })
    .await?;
    let set_name = replica_set.name_any();
    eventually(
        &format!("{replicas} Pods of {namespace}/{set_name}"),
        || async {
            let list = pods.list(&ListParams::default()).await?;
            let owned: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|pod| owned_by(pod.owner_references(), "ReplicaSet", &set_name))
                .collect();
            Ok((owned.len() == replicas).then_some(owned))
        },
    )
    .await
}

fn container_image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .and_then(|container| container.image.clone())
        .unwrap_or_default()
}

/// Starts an HTTPS mutating webhook on 127.0.0.1 that annotates every object
/// it admits, and returns its URL and the counter of its calls.
async fn start_annotating_webhook(
    certificate: &CertifiedKey,
) -> Result<(String, Arc<AtomicUsize>)> {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = axum::Router::new().route(
        "/mutate",
        axum::routing::post(move |axum::Json(review): axum::Json<AdmissionReview<DynamicObject>>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let request: AdmissionRequest<DynamicObject> = review.try_into().expect("an admission request");
                let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
                    { "op": "add", "path": "/metadata/annotations", "value": { "patches.mojaloop.io/smoke": "admitted" } }
                ]))
                .expect("a JSON patch");
                let response = AdmissionResponse::from(&request).with_patch(patch).expect("a serializable patch");
                axum::Json(response.into_review())
            }
        }),
    );
    let certs = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())?;
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}/mutate", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    Ok((url, calls))
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_starts_serves_and_stops() {
    let cluster = Cluster::start().await.expect("the control plane starts");
    let registry = Registry::start_plain().await.expect("the registry starts");
    let mut pids = cluster.pids();
    pids.extend(registry.pid());

    // A failure panics here, while the stack still runs, so that dropping it
    // prints the logs of every component.
    if let Err(error) = exercise_stack(&cluster, &registry).await {
        panic!("{error:?}");
    }

    // Stopping leaves nothing behind.
    drop(registry);
    cluster.stop();
    for pid in pids {
        assert!(!process_exists(pid), "process {pid} outlived the stack");
    }
}

async fn exercise_stack(cluster: &Cluster, registry: &Registry) -> Result<()> {
    // An image to deploy, pushed and listed back.
    let digests = seed::push_image(
        registry.address(),
        "mojaloop/quoting-service",
        &["v10.4.0", "v10.4.0.1-patch"],
        &registry.auth(),
    )
    .await?;
    ensure!(
        digests.len() == 2 && digests[0] != digests[1],
        "each tag has its own digest: {digests:?}"
    );
    let tags = seed::list_tags(
        registry.address(),
        "mojaloop/quoting-service",
        &registry.auth(),
    )
    .await?;
    ensure!(
        tags == ["v10.4.0", "v10.4.0.1-patch"],
        "listed tags: {tags:?}"
    );
    let image = format!("{}/mojaloop/quoting-service:v10.4.0", registry.address());

    // A Deployment through kubectl.
    cluster
        .kubectl(["create", "namespace", "smoke-kubectl"])
        .await?;
    cluster
        .kubectl([
            "create",
            "deployment",
            "web",
            "--image",
            &image,
            "--replicas",
            "2",
            "-n",
            "smoke-kubectl",
        ])
        .await?;
    let pods = wait_for_pods(cluster, "smoke-kubectl", "web", 2).await?;
    for pod in &pods {
        ensure!(
            container_image(pod) == image,
            "Pod image {}",
            container_image(pod)
        );
        let phase = pod.status.as_ref().and_then(|status| status.phase.clone());
        ensure!(
            phase.as_deref() == Some("Pending"),
            "without a kubelet Pods stay Pending, got {phase:?}"
        );
    }
    let listed = cluster
        .kubectl(["get", "pods", "-n", "smoke-kubectl", "-o", "name"])
        .await?;
    ensure!(
        listed.lines().count() == 2,
        "kubectl lists the Pods: {listed}"
    );

    // A Deployment through kube-rs.
    cluster
        .create_namespace("smoke-kube", &[("patches.mojaloop.io/enabled", "true")])
        .await?;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "api" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "api" } },
            "template": {
                "metadata": { "labels": { "app": "api" } },
                "spec": { "containers": [{ "name": "api", "image": image }] },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(cluster.client(), "smoke-kube")
        .create(&PostParams::default(), &deployment)
        .await?;
    wait_for_pods(cluster, "smoke-kube", "api", 1).await?;

    // Pods that the controller-manager creates pass through a mutating webhook
    // served by the test on loopback, in opted-in namespaces only.
    let certificate = cluster.issue_serving_certificate(&["127.0.0.1"])?;
    let (webhook_url, webhook_calls) = start_annotating_webhook(&certificate).await?;
    use base64::Engine as _;
    let webhook: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "smoke-annotate" },
        "webhooks": [{
            "name": "annotate.smoke.patches.mojaloop.io",
            "clientConfig": {
                "url": webhook_url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem()),
            },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"] }],
            "namespaceSelector": { "matchLabels": { "patches.mojaloop.io/enabled": "true" } },
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }))?;
    Api::<MutatingWebhookConfiguration>::all(cluster.client())
        .create(&PostParams::default(), &webhook)
        .await?;
    // The API server loads webhook configurations asynchronously: probe with
    // dry-run Pods until the webhook responds.
    let probe_pods: Api<Pod> = Api::namespaced(cluster.client(), "smoke-kube");
    let probe: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "generateName": "probe-" },
        "spec": { "containers": [{ "name": "probe", "image": image }] },
    }))?;
    eventually("the webhook to be active", || async {
        let created = probe_pods
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await?;
        Ok(created
            .annotations()
            .contains_key("patches.mojaloop.io/smoke")
            .then_some(()))
    })
    .await?;
    let calls_before = webhook_calls.load(Ordering::SeqCst);
    let mut annotated = deployment.clone();
    annotated.metadata.name = Some("annotated".into());
    Api::<Deployment>::namespaced(cluster.client(), "smoke-kube")
        .create(&PostParams::default(), &annotated)
        .await?;
    let pods = wait_for_pods(cluster, "smoke-kube", "annotated", 1).await?;
    ensure!(
        pods[0]
            .annotations()
            .get("patches.mojaloop.io/smoke")
            .map(String::as_str)
            == Some("admitted"),
        "the webhook mutated the Pod that the ReplicaSet created: {:?}",
        pods[0].annotations()
    );
    ensure!(
        webhook_calls.load(Ordering::SeqCst) > calls_before,
        "the webhook was called"
    );
    let unlabelled: Api<Pod> = Api::namespaced(cluster.client(), "smoke-kubectl");
    let created = unlabelled
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &probe,
        )
        .await?;
    ensure!(
        !created
            .annotations()
            .contains_key("patches.mojaloop.io/smoke"),
        "namespaces without the label are not sent to the webhook"
    );

    // The controller-manager publishes the cluster CA into every namespace.
    let root_ca = cluster
        .kubectl([
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "smoke-kube",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
        .await?;
    ensure!(
        root_ca.trim() == cluster.ca_pem().trim(),
        "kube-root-ca.crt contains the cluster CA"
    );

    // A ServiceAccount can read exactly what its Role grants.
    Api::<ServiceAccount>::namespaced(cluster.client(), "smoke-kube")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({ "metadata": { "name": "reader" } }))?,
        )
        .await?;
    let role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(cluster.client(), "smoke-kube")
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-configmaps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some("smoke-kube".into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(cluster.client(), "smoke-kube")
        .create(&PostParams::default(), &binding)
        .await?;
    let reader = cluster
        .service_account_client("smoke-kube", "reader")
        .await?;
    Api::<ConfigMap>::namespaced(reader.clone(), "smoke-kube")
        .list(&ListParams::default())
        .await?;
    let forbidden = Api::<Pod>::namespaced(reader, "smoke-kube")
        .list(&ListParams::default())
        .await;
    ensure!(
        matches!(&forbidden, Err(kube::Error::Api(status)) if status.code == 403),
        "RBAC forbids what the Role does not grant: {forbidden:?}"
    );
    let kubeconfig = cluster
        .service_account_kubeconfig("smoke-kube", "reader")
        .await?;
    let can_i = cluster
        .kubectl([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "auth",
            "can-i",
            "list",
            "configmaps",
            "-n",
            "smoke-kube",
        ])
        .await?;
    ensure!(
        can_i.trim() == "yes",
        "kubectl with the ServiceAccount's kubeconfig: {can_i}"
    );

    // Install and upgrade a chart with each Helm.
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for (helm, namespace) in [("helm3", "smoke-helm3"), ("helm4", "smoke-helm4")] {
        let run = |args: Vec<String>| {
            let cluster = &cluster;
            async move {
                match helm {
                    "helm3" => cluster.helm3(args).await,
                    _ => cluster.helm4(args).await,
                }
            }
        };
        let version = run(vec!["version".into(), "--short".into()]).await?;
        ensure!(
            version.starts_with(if helm == "helm3" { "v3." } else { "v4." }),
            "{helm} version: {version}"
        );
        let common = |verb: &str, tag: &str| -> Vec<String> {
            [verb, "demo", chart, "-n", namespace, "--set"]
                .iter()
                .map(|arg| (*arg).to_owned())
                .chain([format!(
                    "image.repository={}/mojaloop/quoting-service,image.tag={tag}",
                    registry.address()
                )])
                .collect()
        };
        let mut install = common("install", "v10.4.0");
        install.push("--create-namespace".into());
        run(install)
            .await
            .with_context(|| format!("{helm} install"))?;
        let pods = wait_for_pods(cluster, namespace, "demo", 1).await?;
        ensure!(
            container_image(&pods[0]).ends_with(":v10.4.0"),
            "{helm} installed {}",
            container_image(&pods[0])
        );
        run(common("upgrade", "v10.4.0.1-patch"))
            .await
            .with_context(|| format!("{helm} upgrade"))?;
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), namespace);
        let upgraded = deployments.get("demo").await?;
        let template_image = upgraded
            .spec
            .clone()
            .and_then(|spec| spec.template.spec)
            .and_then(|spec| {
                spec.containers
                    .first()
                    .and_then(|container| container.image.clone())
            })
            .unwrap_or_default();
        ensure!(
            template_image.ends_with(":v10.4.0.1-patch"),
            "{helm} upgraded to {template_image}"
        );
        // Helm 4 applies server-side by default, so its field manager records
        // Apply operations, while Helm 3 records Update.
        let operations: Vec<String> = upgraded
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| {
                entry
                    .manager
                    .as_deref()
                    .is_some_and(|manager| manager.starts_with("helm"))
            })
            .filter_map(|entry| entry.operation)
            .collect();
        let expected = if helm == "helm3" { "Update" } else { "Apply" };
        ensure!(
            operations.iter().any(|operation| operation == expected),
            "{helm} field operations: {operations:?}"
        );
        let history = run(vec![
            "history".into(),
            "demo".into(),
            "-n".into(),
            namespace.into(),
            "-o".into(),
            "json".into(),
        ])
        .await?;
        let revisions: Vec<serde_json::Value> = serde_json::from_str(&history)?;
        ensure!(revisions.len() == 2, "{helm} history: {history}");
    }
    Ok(())
}

#[tokio::test]
async fn registries_serve_through_the_fault_proxy() {
    let registry = Registry::start_with_basic_auth("ci", "s3cret")
        .await
        .expect("the registry starts");
    // A failure panics while the registry runs, so that its log is printed.
    if let Err(error) = exercise_fault_proxy(&registry).await {
        panic!("{error:?}");
    }
}

async fn exercise_fault_proxy(registry: &Registry) -> Result<()> {
    let anonymous = seed::list_tags(
        registry.address(),
        "mojaloop/account-lookup-service",
        &oci_client::secrets::RegistryAuth::Anonymous,
    )
    .await;
    ensure!(
        anonymous.is_err(),
        "the registry rejects anonymous requests"
    );
    let tags = [
        "v1.0.0",
        "v1.0.0.1-patch",
        "v1.0.0.2-patch",
        "v1.0.0.3-patch",
        "v1.1.0",
    ];
    seed::push_image(
        registry.address(),
        "mojaloop/account-lookup-service",
        &tags,
        &registry.auth(),
    )
    .await?;

    let proxy = FaultProxy::start(registry.address()).await?;
    proxy.set_page_size(Some(2));
    let http = reqwest::Client::new();
    let (user, password) = registry.credentials().unwrap();
    let mut next = Some("/v2/mojaloop/account-lookup-service/tags/list".to_owned());
    let mut pages = Vec::new();
    while let Some(path) = next.take() {
        let response = http
            .get(format!("{}{path}", proxy.url()))
            .basic_auth(user, Some(password))
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "page status {}",
            response.status()
        );
        next = response.headers().get("link").map(|link| {
            link.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim_matches(|c| c == '<' || c == '>')
                .to_owned()
        });
        let body: serde_json::Value = response.json().await?;
        pages.push(body["tags"].as_array().unwrap().len());
    }
    ensure!(pages == [2, 2, 1], "pages of 2: {pages:?}");
    ensure!(
        proxy.requests(PathKind::TagsList) == 3,
        "three tag-list requests"
    );

    proxy.set_link_style(LinkStyle::Bare);
    let response = http
        .get(format!(
            "{}/v2/mojaloop/account-lookup-service/tags/list",
            proxy.url()
        ))
        .basic_auth(user, Some(password))
        .send()
        .await?;
    let link = response.headers()["link"].to_str()?.to_owned();
    ensure!(
        link == "/v2/mojaloop/account-lookup-service/tags/list?n=2&last=v1.0.0.1-patch; rel=\"next\"",
        "bare link: {link}"
    );

    proxy.inject_for(PathKind::TagsList, Fault::too_many_requests(7), 1);
    proxy.inject(Fault::ServerError { status: 503 }, 1);
    let limited = http
        .get(format!(
            "{}/v2/mojaloop/account-lookup-service/tags/list",
            proxy.url()
        ))
        .send()
        .await?;
    ensure!(
        limited.status() == 429 && limited.headers()["retry-after"] == "7",
        "429 with Retry-After"
    );
    let failed = http.get(format!("{}/v2/", proxy.url())).send().await?;
    ensure!(failed.status() == 503, "503 injected");

    proxy.inject(Fault::TruncatedBody, 1);
    let truncated = http
        .get(format!(
            "{}/v2/mojaloop/account-lookup-service/manifests/v1.0.0",
            proxy.url()
        ))
        .basic_auth(user, Some(password))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await?;
    ensure!(
        truncated.bytes().await.is_err(),
        "a truncated body fails to read"
    );

    proxy.inject(
        Fault::Stall {
            duration: Duration::from_secs(30),
        },
        1,
    );
    let stalled = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?
        .get(format!("{}/v2/", proxy.url()))
        .send()
        .await;
    ensure!(
        stalled.is_err_and(|error| error.is_timeout()),
        "a stalled request times out"
    );

    // oci-client through the proxy, with paging.
    proxy.set_page_size(Some(3));
    let listed = seed::list_tags(
        proxy.address(),
        "mojaloop/account-lookup-service",
        &registry.auth(),
    )
    .await?;
    ensure!(
        listed.len() == 3,
        "oci-client gets the first page: {listed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn slack_receiver_records_and_fails_on_request() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    testsupport::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let post = |text: &str| {
        http.post(slack.url())
            .json(&serde_json::json!({ "text": text }))
            .send()
    };

    let ok = post("first").await?;
    ensure!(
        ok.status() == 200 && ok.text().await? == "ok",
        "Slack-like success"
    );

    slack.reply_next(Reply::ServerError, 1);
    slack.reply_next(
        Reply::RateLimited {
            retry_after_seconds: 3,
        },
        1,
    );
    slack.reply_next(Reply::Stall, 1);
    ensure!(post("second").await?.status() == 500, "500 scheduled");
    let limited = post("third").await?;
    ensure!(
        limited.status() == 429 && limited.headers()["retry-after"] == "3",
        "429 scheduled"
    );
    ensure!(
        post("fourth").await.is_err_and(|error| error.is_timeout()),
        "stall scheduled"
    );
    ensure!(post("fifth").await?.status() == 200, "back to ok");

    let messages = slack.wait_for_messages(5, Duration::from_secs(5)).await?;
    let texts: Vec<&str> = messages
        .iter()
        .filter_map(|message| message.text())
        .collect();
    ensure!(
        texts == ["first", "second", "third", "fourth", "fifth"],
        "recorded {texts:?}"
    );
    let delivered: Vec<String> = slack
        .delivered()
        .iter()
        .filter_map(|m| m.text().map(str::to_owned))
        .collect();
    ensure!(delivered == ["first", "fifth"], "delivered {delivered:?}");
    Ok(())
}
