//! The scanner benchmark: a synthetic hub in the real test stack, scanned by the real
//! scanner binary.
//!
//! ```text
//!  Cluster (etcd, kube-apiserver, controller-manager)
//!    └─ namespaces bench-0 … (opted in), Deployments with replicas 0, one container each
//!  Registry (docker-registry) ◄── seeded: one image pushed per repository, then a tag
//!    ▲                            link per tag (300 tags: 10 lines × levels 0 to 29)
//!  FaultProxy, page size 100 ◄── image-patch-scanner --dry-run (under /usr/bin/time -v)
//!    └─ counts requests by kind
//! ```
//!
//! Each workload runs `bench/repo-R:TAG` of one repository at a level below 29, so every
//! release line in use has exactly one newest patch. The summary is one JSON object on
//! stdout, with one entry per scan.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use testsupport::fault_proxy::PathKind;
use testsupport::{Cluster, FaultProxy, Registry, seed};

const LINES: u64 = 10;
const LEVELS: u64 = 30;
const WORKLOADS_PER_NAMESPACE: u64 = 100;
const OPT_IN_LABEL: (&str, &str) = ("patches.mojaloop.io/enabled", "true");
const CONTROLLER_NAMESPACE: &str = "image-patch-system";

/// Options of the scanner benchmark.
#[derive(Debug, Parser)]
struct Options {
    /// The scanner binary to run.
    #[arg(long)]
    scanner: PathBuf,
    /// Number of workloads (Deployments).
    #[arg(long, default_value_t = 1000)]
    workloads: u64,
    /// Number of repositories the workloads run images of.
    #[arg(long, default_value_t = 200)]
    repositories: u64,
    /// Tags per page of a tag list, set on the proxy and on the scanner.
    #[arg(long, default_value_t = 100)]
    page_size: usize,
    /// Number of scans to run and measure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Folder for the scanner's output of each run.
    #[arg(long)]
    out: PathBuf,
}

fn tag(line: u64, level: u64) -> String {
    if level == 0 {
        format!("v1.{line}.0")
    } else {
        format!("v1.{line}.0.{level}-patch")
    }
}

/// The release line and patch level that workload `index` of a repository runs.
fn running(index: u64) -> (u64, u64) {
    (index % 2, (index * 7) % (LEVELS - 1))
}

/// Pushes one image to each repository and adds the other tags of the repository by
/// writing the registry's tag links in its storage folder.
///
/// PUTting the manifest under each tag through the API took about 8 ms a tag here while
/// other builds ran (60,000 tags: 8 minutes); the links are what such a PUT writes, so the
/// registry serves the same tag lists and manifests. One tag list and one manifest are
/// checked through the API afterwards.
async fn seed_registry(registry: &Registry, repositories: u64) -> anyhow::Result<u64> {
    let storage = registry_storage(registry)?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = registry.url();
    let first = tag(0, 0);
    for repository in 0..repositories {
        let name = format!("bench/repo-{repository}");
        let digest = seed::push_image(
            registry.address(),
            &name,
            &[first.as_str()],
            &registry.auth(),
        )
        .await?
        .pop()
        .context("push_image returned no digest")?;
        let hex = digest
            .strip_prefix("sha256:")
            .context("the digest is not sha256")?;
        let tags = storage.join(format!(
            "docker/registry/v2/repositories/{name}/_manifests/tags"
        ));
        for line in 0..LINES {
            for level in (0..LEVELS).filter(|level| line + level > 0) {
                let folder = tags.join(tag(line, level));
                std::fs::create_dir_all(folder.join("current"))?;
                std::fs::write(folder.join("current/link"), &digest)?;
                std::fs::create_dir_all(folder.join(format!("index/sha256/{hex}")))?;
                std::fs::write(folder.join(format!("index/sha256/{hex}/link")), &digest)?;
            }
        }
    }
    let listed = seed::list_tags(registry.address(), "bench/repo-0", &registry.auth()).await?;
    anyhow::ensure!(
        listed.len() as u64 == LINES * LEVELS,
        "the registry lists {} tags of bench/repo-0, not {}",
        listed.len(),
        LINES * LEVELS
    );
    http.get(format!(
        "{base}/v2/bench/repo-0/manifests/{}",
        tag(LINES - 1, LEVELS - 1)
    ))
    .header("accept", "application/vnd.oci.image.manifest.v1+json")
    .send()
    .await?
    .error_for_status()
    .context("a tag written into the storage folder is not served")?;
    Ok(repositories * LINES * LEVELS)
}

/// Finds the storage folder of the registry: `storage` beside the config file that its
/// command line names (`docker-registry serve DIR/config.yml`).
fn registry_storage(registry: &Registry) -> anyhow::Result<PathBuf> {
    let pid = registry.pid().context("the registry has no process id")?;
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let config = command_line
        .split(|byte| *byte == 0)
        .filter_map(|part| std::str::from_utf8(part).ok())
        .find(|part| part.ends_with(".yml"))
        .context("the registry's command line names no config file")?;
    // The registry creates the folder at its first push.
    Ok(std::path::Path::new(config)
        .parent()
        .context("the config path has no folder")?
        .join("storage"))
}

fn deployment(name: &str, image: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": image }] },
            },
        },
    }))?)
}

/// Creates the workloads and returns the distinct (repository, line) pairs they run,
/// each of which has one newest patch.
async fn seed_cluster(
    cluster: &Cluster,
    proxy: &str,
    workloads: u64,
    repositories: u64,
) -> anyhow::Result<usize> {
    let client = cluster.client();
    let namespaces = workloads.div_ceil(WORKLOADS_PER_NAMESPACE);
    for namespace in 0..namespaces {
        cluster
            .create_namespace(&format!("bench-{namespace}"), &[OPT_IN_LABEL])
            .await?;
    }
    cluster.create_namespace(CONTROLLER_NAMESPACE, &[]).await?;
    let approvals: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "image-patch-approvals" },
        "data": { "approvals.yaml": "approvals: []\n" },
    }))?;
    Api::<ConfigMap>::namespaced(client.clone(), CONTROLLER_NAMESPACE)
        .create(&PostParams::default(), &approvals)
        .await?;

    let mut lines_in_use = BTreeSet::new();
    let mut specs = Vec::new();
    for index in 0..workloads {
        let repository = index % repositories;
        let (line, level) = running(index / repositories);
        lines_in_use.insert((repository, line));
        let image = format!("{proxy}/bench/repo-{repository}:{}", tag(line, level));
        specs.push((
            format!("bench-{}", index / WORKLOADS_PER_NAMESPACE),
            deployment(&format!("workload-{index}"), &image)?,
        ));
    }
    futures::stream::iter(specs)
        .map(|(namespace, deployment)| {
            let api = Api::<Deployment>::namespaced(client.clone(), &namespace);
            async move { api.create(&PostParams::default(), &deployment).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(lines_in_use.len())
}

/// Reads one field of `/usr/bin/time -v` output.
fn time_field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
}

fn wall_seconds(text: &str) -> Option<f64> {
    let value = time_field(text, "Elapsed (wall clock) time (h:mm:ss or m:ss):")?;
    value.split(':').try_fold(0.0, |total, part| {
        part.parse::<f64>().ok().map(|part| total * 60.0 + part)
    })
}

async fn scan(
    options: &Options,
    cluster: &Cluster,
    proxy: &FaultProxy,
    run: usize,
) -> anyhow::Result<Value> {
    proxy.reset_counters();
    let stdout = options.out.join(format!("scan-{run}.json"));
    let stderr = options.out.join(format!("scan-{run}.log"));
    let started = Instant::now();
    let status = tokio::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&options.scanner)
        .args([
            "--dry-run",
            "--output",
            "json",
            "--cluster-name",
            "bench",
            "--insecure-registry",
            proxy.address(),
        ])
        .arg(format!("--tags-page-size={}", options.page_size))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?)
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run /usr/bin/time")?;
    let measured = started.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(&stderr)?;
    // In dry-run mode stdout contains the Slack messages, then the report: JSON documents in a row.
    let output = std::fs::read_to_string(&stdout)?;
    let documents: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(&output)
        .into_iter::<Value>()
        .collect();
    let report_parsed = documents.is_ok_and(|documents| !documents.is_empty());
    Ok(json!({
        "run": run,
        "exit_status": status.code(),
        "wall_seconds": wall_seconds(&log).unwrap_or(measured),
        "max_rss_kib": time_field(&log, "Maximum resident set size (kbytes):").and_then(|value| value.parse::<u64>().ok()),
        "requests": {
            "total": proxy.total_requests(),
            "base": proxy.requests(PathKind::Base),
            "tags_list": proxy.requests(PathKind::TagsList),
            "manifest": proxy.requests(PathKind::Manifest),
            "blob": proxy.requests(PathKind::Blob),
            "other": proxy.requests(PathKind::Other),
        },
        "report_parsed": report_parsed,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    // reqwest and the test stack are built without a provider of their own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    anyhow::ensure!(
        options.repositories > 0 && options.workloads > 0,
        "--workloads and --repositories must be positive"
    );
    std::fs::create_dir_all(&options.out)?;

    let setup = Instant::now();
    let (cluster, registry) = tokio::try_join!(
        async { Cluster::start().await.context("cannot start the cluster") },
        async {
            Registry::start_plain()
                .await
                .context("cannot start the registry")
        },
    )?;
    let proxy = FaultProxy::start(registry.address()).await?;
    proxy.set_page_size(Some(options.page_size));
    eprintln!("stack started in {:.1} s", setup.elapsed().as_secs_f64());

    let seeding = Instant::now();
    let tags = seed_registry(&registry, options.repositories).await?;
    let registry_seconds = seeding.elapsed().as_secs_f64();
    eprintln!("seeded {tags} tags in {registry_seconds:.1} s");
    let seeding = Instant::now();
    let lines_in_use = seed_cluster(
        &cluster,
        proxy.address(),
        options.workloads,
        options.repositories,
    )
    .await?;
    let cluster_seconds = seeding.elapsed().as_secs_f64();
    eprintln!(
        "created {} workloads in {cluster_seconds:.1} s",
        options.workloads
    );
    // Let the controller-manager settle (ReplicaSets of the Deployments) before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut scans = Vec::new();
    for run in 1..=options.runs {
        let result = scan(&options, &cluster, &proxy, run).await?;
        eprintln!("scan {run}: {result}");
        scans.push(result);
    }
    let pages_per_repository = (LINES * LEVELS).div_ceil(options.page_size as u64);
    println!(
        "{}",
        json!({
            "workloads": options.workloads,
            "repositories": options.repositories,
            "tags_per_repository": LINES * LEVELS,
            "page_size": options.page_size,
            "expected": {
                "tags_list_pages": options.repositories * pages_per_repository,
                "newest_patches": lines_in_use,
            },
            "seeding_seconds": { "registry": registry_seconds, "cluster": cluster_seconds },
            "scans": scans,
        })
    );
    drop(proxy);
    cluster.stop();
    drop(registry);
    Ok(())
}
