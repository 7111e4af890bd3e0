//! Smoke test of the local test stack: it starts every component, drives each
//! one the way the product's tests will, and checks that stopping the stack
//! leaves no process behind.
//!
//! The control-plane test needs the tools of `tests/tools/build.sh` and fails,
//! without skipping, when they are missing.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testsupport::fault_proxy::{Fault, LinkStyle, PathKind};
use testsupport::seed;
use testsupport::slack::Reply;
use testsupport::{Cluster, FaultProxy, Registry, SlackReceiver};

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

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_starts_serves_and_stops() -> Result<()> {
    let cluster = Cluster::start()
        .await
        .context("starting the control plane")?;
    let registry = Registry::start_plain().await?;
    let mut pids = cluster.pids();
    pids.extend(registry.pid());

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
    let pods = wait_for_pods(&cluster, "smoke-kubectl", "web", 2).await?;
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
    wait_for_pods(&cluster, "smoke-kube", "api", 1).await?;

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
        let pods = wait_for_pods(&cluster, namespace, "demo", 1).await?;
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

    // Stopping leaves nothing behind.
    drop(registry);
    cluster.stop();
    for pid in pids {
        ensure!(!process_exists(pid), "process {pid} outlived the stack");
    }
    Ok(())
}

#[tokio::test]
async fn registries_serve_through_the_fault_proxy() -> Result<()> {
    let registry = Registry::start_with_basic_auth("ci", "s3cret").await?;
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
