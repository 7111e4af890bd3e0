//! The rewrite decision: one pure function used by the webhook and the scanner's rollout.
//!
//! ```text
//!   image ─► ImageRef::parse ─► source repository ─► scheme ─► running (line, level)
//!                                                                     │
//!   Approvals::lookup_line(repository, line, namespace) ◄─────────────┘
//!        │
//!        └─► approved level > running level ? Rewrite : Keep(reason)
//! ```
//!
//! Each container is decided on its own, so an init container of the same repository at
//! another release line gets the decision for its own line.

use crate::approvals::{Approvals, Lookup};
use crate::reference::ImageRef;

/// A change of one image's tag (and digest) to an approved patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The image as it was.
    pub from: String,
    /// The image as it becomes: same name as written, approved tag, approved digest or none.
    pub to: String,
    /// Index of the approval applied.
    pub approval_index: usize,
}

impl Rewrite {
    /// Checks the rewrite invariant: `to` has the same registry and repository as `from`
    /// (as written, before aliases), its tag is in the same release line under the
    /// repository's scheme, and its patch level is higher.
    pub fn respects_invariant(&self, approvals: &Approvals) -> bool {
        let (Ok(from), Ok(to)) = (ImageRef::parse(&self.from), ImageRef::parse(&self.to)) else {
            return false;
        };
        if from.repository != to.repository {
            return false;
        }
        let (Some(from_tag), Some(to_tag)) = (from.tag.as_deref(), to.tag.as_deref()) else {
            return false;
        };
        let scheme = approvals.scheme_for(&approvals.source_repository(&from));
        match (scheme.parse(from_tag), scheme.parse(to_tag)) {
            (Some(old), Some(new)) => old.line == new.line && new.level > old.level,
            _ => false,
        }
    }
}

/// The reason an image is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// The reference cannot be parsed; the message names the part that is wrong.
    InvalidReference(String),
    /// Pinned by digest alone.
    PinnedByDigest,
    /// The tag is outside the repository's versioning scheme, or there is no tag.
    OutsideScheme,
    /// No approval for this repository and release line.
    NoApproval,
    /// Already at or above the approved patch level.
    AtOrAboveApproved {
        /// The approved patch tag.
        approved: String,
    },
    /// An approval exists, but not for this namespace.
    NamespaceOutOfScope,
}

/// The decision for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rewrite to an approved patch.
    Rewrite(Rewrite),
    /// Leave alone.
    Keep(KeepReason),
}

/// Decides whether `image` in `namespace` is rewritten under `approvals`.
///
/// A reference with a tag and a digest is rewritten to the approved tag with the
/// approved digest, or with no digest when the approval has none, because the old
/// digest names the old image. A reference without a tag (implicitly `latest`) is
/// outside every scheme.
pub fn decide(image: &str, namespace: &str, approvals: &Approvals) -> Decision {
    let parsed = match ImageRef::parse(image) {
        Ok(parsed) => parsed,
        Err(error) => return Decision::Keep(KeepReason::InvalidReference(error.to_string())),
    };
    let Some(tag) = parsed.tag.as_deref() else {
        let reason = if parsed.digest.is_some() { KeepReason::PinnedByDigest } else { KeepReason::OutsideScheme };
        return Decision::Keep(reason);
    };

    let repository = approvals.source_repository(&parsed);
    let Some(running) = approvals.scheme_for(&repository).parse(tag) else {
        return Decision::Keep(KeepReason::OutsideScheme);
    };
    let approval = match approvals.lookup_line(&repository, &running.line, namespace) {
        Lookup::Found(approval) => approval,
        Lookup::NamespaceOutOfScope(_) => return Decision::Keep(KeepReason::NamespaceOutOfScope),
        Lookup::None => return Decision::Keep(KeepReason::NoApproval),
    };
    if running.level >= approval.patch_version.level {
        return Decision::Keep(KeepReason::AtOrAboveApproved { approved: approval.patch.clone() });
    }

    let rewrite = Rewrite {
        from: image.to_owned(),
        to: parsed.with_tag(&approval.patch, approval.digest.as_deref()),
        approval_index: approval.index,
    };
    debug_assert!(rewrite.respects_invariant(approvals), "rewrite breaks the invariant: {rewrite:?}");
    Decision::Rewrite(rewrite)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;
    use crate::scheme::Scheme;

    const DOCUMENT: &str = r#"
approvals:
  - image: mojaloop/quoting-service
    version: v10.4.0
    patch: v10.4.0.2-patch
  - image: mojaloop/central-ledger
    version: v17.8.0
    patch: v17.8.0.1-patch
    digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    namespaces: [mojaloop]
  - image: mysql
    version: 8.0.1
    patch: 8.0.3
policies:
  - image: mysql
    scheme: semver-patch
registries:
  mirror.gcr.io: docker.io
"#;

    fn approvals() -> Approvals {
        let (approvals, errors) = Approvals::parse(DOCUMENT).expect("document parses");
        assert_eq!(errors, Vec::new());
        approvals
    }

    #[rstest]
    #[case("mojaloop/quoting-service:v10.4.0", "mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case("mojaloop/quoting-service:v10.4.0.1-patch", "mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case("docker.io/mojaloop/quoting-service:v10.4.0", "docker.io/mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case("mirror.gcr.io/mojaloop/quoting-service:v10.4.0", "mirror.gcr.io/mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case(
        "mojaloop/central-ledger:v17.8.0",
        "mojaloop/central-ledger:v17.8.0.1-patch@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    #[case("mojaloop/quoting-service:v10.4.0@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "mojaloop/quoting-service:v10.4.0.2-patch")]
    #[case("mysql:8.0.1", "mysql:8.0.3")]
    #[case("mysql:8.0.2", "mysql:8.0.3")]
    fn decide_rewrites(#[case] image: &str, #[case] expected: &str) {
        let decision = decide(image, "mojaloop", &approvals());
        let Decision::Rewrite(rewrite) = decision else {
            panic!("expected a rewrite of {image}, got {decision:?}");
        };
        assert_eq!(rewrite.from, image);
        assert_eq!(rewrite.to, expected);
    }

    #[rstest]
    #[case("Mojaloop/Quoting:v1", "mojaloop", None)]
    #[case("mojaloop/quoting-service@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "mojaloop", Some(KeepReason::PinnedByDigest))]
    #[case("mojaloop/quoting-service:latest", "mojaloop", Some(KeepReason::OutsideScheme))]
    #[case("mojaloop/quoting-service", "mojaloop", Some(KeepReason::OutsideScheme))]
    #[case("mojaloop/quoting-service:v10.4.0.160-snapshot.7", "mojaloop", Some(KeepReason::OutsideScheme))]
    #[case("mojaloop/quoting-service:v10.4.1", "mojaloop", Some(KeepReason::NoApproval))]
    #[case("mojaloop/account-lookup-service:v10.4.0", "mojaloop", Some(KeepReason::NoApproval))]
    #[case("mojaloop/quoting-service:v10.4.0.2-patch", "mojaloop", Some(KeepReason::AtOrAboveApproved { approved: "v10.4.0.2-patch".to_owned() }))]
    #[case("mojaloop/quoting-service:v10.4.0.3-patch", "mojaloop", Some(KeepReason::AtOrAboveApproved { approved: "v10.4.0.2-patch".to_owned() }))]
    #[case("mojaloop/central-ledger:v17.8.0", "other", Some(KeepReason::NamespaceOutOfScope))]
    fn decide_keeps(#[case] image: &str, #[case] namespace: &str, #[case] expected: Option<KeepReason>) {
        let decision = decide(image, namespace, &approvals());
        match expected {
            Some(reason) => assert_eq!(decision, Decision::Keep(reason)),
            None => assert!(matches!(decision, Decision::Keep(KeepReason::InvalidReference(_))), "got {decision:?}"),
        }
    }

    #[test]
    fn invalid_reference_names_part() {
        let decision = decide("Mojaloop/Quoting:v1", "mojaloop", &approvals());
        let expected = r#"invalid image reference "Mojaloop/Quoting:v1": repository "Mojaloop/Quoting" must be lowercase"#;
        assert_eq!(decision, Decision::Keep(KeepReason::InvalidReference(expected.to_owned())));
    }

    #[test]
    fn stale_digest_replaced_by_approved() {
        let image = "mojaloop/central-ledger:v17.8.0@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let Decision::Rewrite(rewrite) = decide(image, "mojaloop", &approvals()) else {
            panic!("expected a rewrite");
        };
        assert_eq!(rewrite.to, "mojaloop/central-ledger:v17.8.0.1-patch@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(rewrite.approval_index, 1);
    }

    #[test]
    fn each_container_decided_alone() {
        let document = "\
approvals:
  - image: mojaloop/central-ledger
    version: v17.8.0
    patch: v17.8.0.2-patch
  - image: mojaloop/central-ledger
    version: v17.7.0
    patch: v17.7.0.1-patch
";
        let (approvals, errors) = Approvals::parse(document).expect("document parses");
        assert_eq!(errors, Vec::new());
        let pod = ["mojaloop/central-ledger:v16.0.0", "mojaloop/central-ledger:v17.8.0", "mojaloop/central-ledger:v17.7.0"];
        let decisions: Vec<Decision> = pod.iter().map(|image| decide(image, "mojaloop", &approvals)).collect();
        assert_eq!(decisions[0], Decision::Keep(KeepReason::NoApproval));
        let targets: Vec<Option<&str>> = decisions
            .iter()
            .map(|decision| match decision {
                Decision::Rewrite(rewrite) => Some(rewrite.to.as_str()),
                Decision::Keep(_) => None,
            })
            .collect();
        assert_eq!(targets, [None, Some("mojaloop/central-ledger:v17.8.0.2-patch"), Some("mojaloop/central-ledger:v17.7.0.1-patch")]);
    }

    #[test]
    fn scheme_from_policy_applies() {
        let document = "\
policies:
  - image: mojaloop/ml-api-adapter
    scheme: suffix-counter
    suffix: hotfix
approvals:
  - image: mojaloop/ml-api-adapter
    version: v9.3.0
    patch: v9.3.0-hotfix.10
";
        let (approvals, _) = Approvals::parse(document).expect("document parses");
        let rewritten = |image: &str| match decide(image, "mojaloop", &approvals) {
            Decision::Rewrite(rewrite) => Some(rewrite.to),
            Decision::Keep(_) => None,
        };
        assert_eq!(rewritten("mojaloop/ml-api-adapter:v9.3.0-hotfix.9").as_deref(), Some("mojaloop/ml-api-adapter:v9.3.0-hotfix.10"));
        assert_eq!(rewritten("mojaloop/ml-api-adapter:v9.3.0-hotfix.10"), None);
        assert_eq!(rewritten("mojaloop/ml-api-adapter:v9.3.0.1-patch"), None);
    }

    #[rstest]
    #[case::other_repository("mojaloop/quoting-service:v10.4.0", "mojaloop/other:v10.4.0.2-patch", false)]
    #[case::other_registry("mojaloop/quoting-service:v10.4.0", "harbor.local/mojaloop/quoting-service:v10.4.0.2-patch", false)]
    #[case::other_line("mojaloop/quoting-service:v10.4.0", "mojaloop/quoting-service:v10.4.1.1-patch", false)]
    #[case::lower_level("mojaloop/quoting-service:v10.4.0.2-patch", "mojaloop/quoting-service:v10.4.0.1-patch", false)]
    #[case::same_level("mojaloop/quoting-service:v10.4.0.2-patch", "mojaloop/quoting-service:v10.4.0.2-patch", false)]
    #[case::outside_scheme("mojaloop/quoting-service:latest", "mojaloop/quoting-service:v10.4.0.2-patch", false)]
    #[case::no_tag("mojaloop/quoting-service", "mojaloop/quoting-service:v10.4.0.2-patch", false)]
    #[case::invalid("Mojaloop/x:v1", "mojaloop/x:v1", false)]
    #[case::valid("mojaloop/quoting-service:v10.4.0", "docker.io/mojaloop/quoting-service:v10.4.0.2-patch", true)]
    fn invariant_check(#[case] from: &str, #[case] to: &str, #[case] expected: bool) {
        let rewrite = Rewrite { from: from.to_owned(), to: to.to_owned(), approval_index: 0 };
        assert_eq!(rewrite.respects_invariant(&approvals()), expected);
    }

    /// Approvals for `mojaloop/svc` lines v1.0.0 … v1.4.0 at the given levels, in every
    /// namespace, with a digest on even lines.
    fn generated_approvals(levels: &[u64]) -> Approvals {
        let mut document = String::from("approvals:\n");
        for (line, level) in levels.iter().enumerate() {
            document.push_str(&format!("  - image: mojaloop/svc\n    version: v1.{line}.0\n    patch: v1.{line}.0.{level}-patch\n"));
            if line % 2 == 0 {
                document.push_str(&format!("    digest: sha256:{}\n", "c".repeat(64)));
            }
        }
        document.push_str("registries:\n  mirror.gcr.io: docker.io\n");
        let (approvals, errors) = Approvals::parse(&document).expect("generated document parses");
        assert_eq!(errors, Vec::new());
        approvals
    }

    fn images() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("mojaloop/svc"),
            Just("docker.io/mojaloop/svc"),
            Just("index.docker.io/mojaloop/svc"),
            Just("mirror.gcr.io/mojaloop/svc"),
            Just("harbor.local:5000/mojaloop/svc"),
        ];
        let tag = prop_oneof![
            (0u32..6, 0u64..8).prop_map(|(line, level)| {
                if level == 0 { format!("v1.{line}.0") } else { format!("v1.{line}.0.{level}-patch") }
            }),
            "[a-z0-9.-]{1,12}".prop_map(|tag| format!("v{tag}")),
        ];
        let digest = proptest::option::of(Just(format!("@sha256:{}", "d".repeat(64))));
        (name, tag, digest).prop_map(|(name, tag, digest)| format!("{name}:{tag}{}", digest.unwrap_or_default()))
    }

    proptest! {
        #[test]
        fn rewrite_keeps_repository_line_and_raises_level(levels in proptest::collection::vec(1u64..8, 5), image in images()) {
            let approvals = generated_approvals(&levels);
            let Decision::Rewrite(rewrite) = decide(&image, "mojaloop", &approvals) else {
                return Ok(());
            };
            prop_assert!(rewrite.respects_invariant(&approvals));

            let from = ImageRef::parse(&rewrite.from).expect("input parses");
            let to = ImageRef::parse(&rewrite.to).expect("rewrite parses");
            prop_assert_eq!(&from.repository, &to.repository);
            prop_assert_eq!(&from.written_name, &to.written_name);
            let scheme = Scheme::PatchSuffix;
            let old = scheme.parse(from.tag.as_deref().unwrap_or_default()).expect("rewritten tag is in the scheme");
            let new = scheme.parse(to.tag.as_deref().unwrap_or_default()).expect("new tag is in the scheme");
            prop_assert_eq!(&old.line, &new.line);
            prop_assert!(new.level > old.level);
            let approval = &approvals.approvals()[rewrite.approval_index];
            prop_assert_eq!(to.digest, approval.digest.clone());
        }

        #[test]
        fn decide_never_panics(image in "\\PC{0,200}", namespace in "\\PC{0,70}") {
            let _ = decide(&image, &namespace, &approvals());
        }
    }
}
