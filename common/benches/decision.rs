//! The rewrite decision for one pod of 20 containers against 500 approvals, the work the
//! webhook does for each admitted pod.
//!
//! Run with `cargo bench -p image-patch-common`; `-- --test` runs each case once.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use common::{Approvals, Decision, decide};

const REPOSITORIES: usize = 100;
const LINES_PER_REPOSITORY: usize = 5;
const CONTAINERS: usize = 20;

/// 500 approvals: 100 repositories with 5 release lines each, a third of them pinned by
/// digest and a fifth limited to namespaces, behind a handful of policies.
fn approvals() -> Approvals {
    let mut document = String::from(
        "policies:
  - image: mojaloop/service-7
    scheme: suffix-counter
    suffix: hotfix
  - image: mysql
    scheme: semver-patch
  - image: registry.example.org/team/*
    scheme: regex
    pattern: '^v(?P<line>\\d+\\.\\d+\\.\\d+)(?:-p(?P<level>\\d+))?$'
  - image: mojaloop/*
    mode: auto
registries:
  mirror.gcr.io: docker.io
approvals:
",
    );
    for repository in 0..REPOSITORIES {
        for line in 0..LINES_PER_REPOSITORY {
            document.push_str(&format!("  - image: mojaloop/service-{repository}\n"));
            if repository == 7 {
                document.push_str(&format!("    version: v10.{line}.0\n    patch: v10.{line}.0-hotfix.3\n"));
            } else {
                document.push_str(&format!("    version: v10.{line}.0\n    patch: v10.{line}.0.3-patch\n"));
            }
            if (repository + line) % 3 == 0 {
                document.push_str(&format!("    digest: sha256:{}\n", "e".repeat(64)));
            }
            if (repository + line) % 5 == 0 {
                document.push_str("    namespaces: [payments, settlement]\n");
            }
        }
    }
    let (approvals, errors) = Approvals::parse(&document).expect("benchmark document parses");
    assert!(errors.is_empty(), "benchmark document has invalid entries: {errors:?}");
    assert_eq!(approvals.approvals().len(), REPOSITORIES * LINES_PER_REPOSITORY);
    approvals
}

/// 20 container images: 8 rewrites through short names, full names and a mirror, and
/// images left alone for each reason.
fn pod() -> Vec<String> {
    let digest = format!("sha256:{}", "f".repeat(64));
    let images = vec![
        "mojaloop/service-1:v10.0.0".to_owned(),
        "docker.io/mojaloop/service-2:v10.1.0.1-patch".to_owned(),
        "mirror.gcr.io/mojaloop/service-3:v10.1.0".to_owned(),
        format!("mojaloop/service-4:v10.3.0@{digest}"),
        "mojaloop/service-7:v10.4.0-hotfix.1".to_owned(),
        "mojaloop/service-50:v10.4.0.2-patch".to_owned(),
        "mojaloop/service-98:v10.1.0".to_owned(),
        "index.docker.io/mojaloop/service-99:v10.2.0".to_owned(),
        "mojaloop/service-5:v10.0.0".to_owned(),
        "mojaloop/service-6:v10.0.0.9-patch".to_owned(),
        "mojaloop/service-8:v11.0.0".to_owned(),
        "mojaloop/service-9:v10.0.0.160-snapshot.7".to_owned(),
        "mojaloop/service-10:latest".to_owned(),
        format!("mojaloop/service-11@{digest}"),
        "mojaloop/unapproved:v10.0.0".to_owned(),
        "mysql:8.0.36".to_owned(),
        "registry.example.org/team/app:v1.2.3-p4".to_owned(),
        "harbor.local:5000/mojaloop/service-1:v10.0.0".to_owned(),
        "busybox:1.36".to_owned(),
        "Invalid/Name:v1".to_owned(),
    ];
    assert_eq!(images.len(), CONTAINERS);
    images
}

fn decide_pod(criterion: &mut Criterion) {
    let approvals = approvals();
    let pod = pod();
    let rewrites = pod.iter().filter(|image| matches!(decide(image, "mojaloop", &approvals), Decision::Rewrite(_))).count();
    assert_eq!(rewrites, 8, "the pod should mix rewrites and kept images");

    criterion.bench_function("decide pod of 20 containers, 500 approvals", |bencher| {
        bencher.iter(|| {
            for image in &pod {
                black_box(decide(black_box(image), black_box("mojaloop"), &approvals));
            }
        });
    });
}

criterion_group!(benches, decide_pod);
criterion_main!(benches);
