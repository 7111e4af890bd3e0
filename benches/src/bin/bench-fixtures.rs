//! Writes the webhook benchmark's inputs: an approvals file with 500 approvals and a file
//! of AdmissionReview requests, one JSON document a line, for `wrk` and `bench-rate`.
//!
//! The approvals cover 100 repositories (`mojaloop/service-0` …) with 5 release lines each
//! (`v10.0.0` … `v10.4.0`), each approved up to patch level 2. The requests are Pods and
//! Deployments with 1 to 20 containers. A container runs an approved line at level 0 or 1
//! (rewritten), an approved line already at level 3 (kept), a line with no approval
//! (`v10.9.0`, kept), or a database image with no approval (kept). About a quarter of the
//! requests have no image to rewrite at all.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Value, json};

const REPOSITORIES: u64 = 100;
const LINES_PER_REPOSITORY: u64 = 5;
const APPROVED_LEVEL: u64 = 2;

/// Options of the fixture generator.
#[derive(Debug, Parser)]
struct Options {
    /// Folder to write `approvals.yaml` and `reviews.jsonl` into.
    #[arg(long)]
    out: PathBuf,
    /// Number of AdmissionReview requests to write.
    #[arg(long, default_value_t = 1000)]
    reviews: u64,
    /// Seed of the pseudo-random mix, so that a run can be repeated exactly.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// A xorshift64* generator: enough to vary the mix, and free of dependencies.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Returns a number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn approvals_document() -> String {
    let mut document = String::from("approvals:\n");
    for repository in 0..REPOSITORIES {
        for line in 0..LINES_PER_REPOSITORY {
            writeln!(
                document,
                "  - image: mojaloop/service-{repository}\n    version: v10.{line}.0\n    patch: v10.{line}.0.{APPROVED_LEVEL}-patch\n    approvedBy: bench@example.org"
            )
            .expect("writing to a String cannot fail");
        }
    }
    document
}

/// Picks one container image. When `rewrite` is false, the image is one the webhook keeps.
fn image(random: &mut Random, rewrite: bool) -> (String, bool) {
    let repository = random.below(REPOSITORIES);
    let line = random.below(LINES_PER_REPOSITORY);
    let choice = if rewrite {
        random.below(4)
    } else {
        1 + random.below(3)
    };
    match choice {
        0 => {
            let level = random.below(APPROVED_LEVEL);
            let tag = if level == 0 {
                format!("v10.{line}.0")
            } else {
                format!("v10.{line}.0.{level}-patch")
            };
            (format!("mojaloop/service-{repository}:{tag}"), true)
        }
        1 => (
            format!("mojaloop/service-{repository}:v10.{line}.0.3-patch"),
            false,
        ),
        2 => (
            format!("docker.io/mojaloop/service-{repository}:v10.9.0"),
            false,
        ),
        _ => (format!("mysql:8.0.{}", 30 + random.below(10)), false),
    }
}

fn containers(random: &mut Random, count: u64, rewrites: bool) -> (Vec<Value>, u64) {
    let mut rewritten = 0;
    let containers = (0..count)
        .map(|index| {
            let (image, rewrite) = image(random, rewrites);
            rewritten += u64::from(rewrite);
            json!({
                "name": format!("container-{index}"),
                "image": image,
                "ports": [{ "containerPort": 3000 + index, "protocol": "TCP" }],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
            })
        })
        .collect();
    (containers, rewritten)
}

fn review(index: u64, random: &mut Random) -> (Value, u64) {
    let count = 1 + random.below(20);
    let rewrites = random.below(4) != 0;
    let (containers, rewritten) = containers(random, count, rewrites);
    let name = format!("workload-{index}");
    let labels =
        json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "mojaloop" });
    let pod_spec = json!({ "containers": containers, "restartPolicy": "Always" });
    let deployment = random.below(2) == 0;
    let (group, kind, resource, object) = if deployment {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": "mojaloop", "labels": labels },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels },
                "template": { "metadata": { "labels": labels }, "spec": pod_spec },
            },
        });
        ("apps", "Deployment", "deployments", object)
    } else {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": "mojaloop", "labels": labels },
            "spec": pod_spec,
        });
        ("", "Pod", "pods", object)
    };
    let version = "v1";
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-4000-8000-{index:012}"),
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": resource },
            "requestKind": { "group": group, "version": version, "kind": kind },
            "requestResource": { "group": group, "version": version, "resource": resource },
            "name": name,
            "namespace": "mojaloop",
            "operation": "CREATE",
            "userInfo": { "username": "system:serviceaccount:kube-system:deployment-controller", "groups": ["system:authenticated"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        },
    });
    (review, rewritten)
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let approvals = options.out.join("approvals.yaml");
    fs::write(&approvals, approvals_document())
        .with_context(|| format!("cannot write {}", approvals.display()))?;

    let mut random = Random(options.seed.max(1));
    let mut lines = String::new();
    let (mut containers, mut rewritten, mut unchanged_reviews) = (0, 0, 0);
    for index in 0..options.reviews {
        let (review, rewrites) = review(index, &mut random);
        let count = review["request"]["object"]
            .pointer("/spec/containers")
            .or(review["request"]["object"].pointer("/spec/template/spec/containers"));
        containers += count
            .and_then(Value::as_array)
            .map_or(0, |list| list.len() as u64);
        rewritten += rewrites;
        unchanged_reviews += u64::from(rewrites == 0);
        lines.push_str(&serde_json::to_string(&review)?);
        lines.push('\n');
    }
    let reviews = options.out.join("reviews.jsonl");
    fs::write(&reviews, lines).with_context(|| format!("cannot write {}", reviews.display()))?;
    println!(
        "{}",
        json!({
            "approvals": REPOSITORIES * LINES_PER_REPOSITORY,
            "reviews": options.reviews,
            "containers": containers,
            "rewritten_containers": rewritten,
            "reviews_without_rewrite": unchanged_reviews,
        })
    );
    Ok(())
}
