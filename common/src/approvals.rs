//! The approvals document (ConfigMap `image-patch-approvals`, key `approvals.yaml`).
//!
//! [`Approvals::parse`] reads the document in three passes, each using the ones before:
//!
//! ```text
//!   registries ──► aliases (mirror → source)
//!   policies   ──► globs over source repositories, each with a scheme and a mode
//!   approvals  ──► entries checked under their repository's scheme, indexed by
//!                  (repository, release line) for lookups
//! ```
//!
//! What fails how:
//!
//! - **The whole document** ([`DocumentError`]): YAML that does not parse, a duplicate
//!   key, or a root that is not a mapping. Also a top-level key other than `approvals`,
//!   `policies` and `registries`, and a section of the wrong type (`approvals` that is
//!   not a list). A misspelled section name would otherwise drop every approval at once and
//!   roll workloads back, so the caller keeps the last good approvals instead.
//! - **One entry** ([`EntryError`], skipped): an unknown or misspelled key inside an
//!   entry, a missing or invalid value, an approval whose patch is not a newer patch of
//!   its version's line, and an entry that conflicts with an earlier one. The error names
//!   the section, the index and the line; the other entries stay in force.
//! - An empty document, or a missing or empty section, is valid and approves nothing.
//!
//! Conflicts: two approvals for the same repository and release line whose namespaces
//! overlap (an approval without `namespaces` overlaps every other), two policies with
//! the same normalized glob (the later one could never match), and two spellings of one
//! registry alias. The later entry is skipped and its error names the earlier one.

mod document;
mod glob;
mod parse;
mod positions;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::reference::{ImageRef, Repository};
use crate::scheme::Scheme;

pub use document::{ApprovalEntry, Document, PolicyEntry, append_approval};

/// Name of the approvals ConfigMap.
pub const CONFIGMAP_NAME: &str = "image-patch-approvals";
/// Key of the document in the approvals ConfigMap.
pub const CONFIGMAP_KEY: &str = "approvals.yaml";

const NOT_A_MAPPING: &str = "the document must be a mapping with the keys approvals, policies and registries";

/// The scheme of repositories that no policy matches.
static DEFAULT_SCHEME: Scheme = Scheme::PatchSuffix;

/// One valid approval entry.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Position in the `approvals` list, from 0.
    pub index: usize,
    /// Line of the entry in the document, from 1; 0 when the line could not be found.
    pub line: usize,
    /// The repository, normalized with registry aliases applied.
    pub repository: Repository,
    /// The `version` as written.
    pub version: String,
    /// The approved patch tag.
    pub patch: String,
    /// The patch's split by the repository's scheme.
    pub patch_version: crate::scheme::TagVersion,
    /// Optional exact digest.
    pub digest: Option<String>,
    /// Namespaces in scope; `None` means every opted-in namespace.
    pub namespaces: Option<Vec<String>>,
    /// The person or policy that approved it.
    pub approved_by: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

impl Approval {
    /// Checks whether the approval applies in `namespace`.
    pub fn applies_in(&self, namespace: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|namespaces| namespaces.iter().any(|name| name == namespace))
    }
}

/// Whether the scanner only notifies or approves new patches itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Notify only (the default).
    #[default]
    Notify,
    /// The scanner adds approvals itself.
    Auto,
}

/// One valid policy entry.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Position in the `policies` list, from 0.
    pub index: usize,
    /// Glob over normalized repositories (`docker.io/mojaloop/*`).
    pub pattern: String,
    /// The versioning scheme.
    pub scheme: Scheme,
    /// Notify or auto.
    pub mode: Mode,
}

/// An invalid entry, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{section}[{index}] (line {line}): {message}")]
pub struct EntryError {
    /// `approvals`, `policies` or `registries`.
    pub section: &'static str,
    /// Position in that list (for `registries`, in that mapping), from 0.
    pub index: usize,
    /// Line in the document, from 1; 0 when the line could not be found.
    pub line: usize,
    /// The problem and its fix.
    pub message: String,
}

/// A document that cannot be used at all; the last good approvals stay in force.
#[derive(Debug, thiserror::Error)]
#[error("approvals document is invalid: {message}")]
pub struct DocumentError {
    /// The problem, with line and column when the parser reports them.
    pub message: String,
}

impl DocumentError {
    fn from_yaml(error: serde_yaml_ng::Error) -> DocumentError {
        DocumentError { message: error.to_string() }
    }
}

/// The valid part of an approvals document, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    approvals: Vec<Approval>,
    policies: Vec<Policy>,
    /// The compiled glob of each policy, in the same order.
    globs: Vec<glob::Glob>,
    /// Registry aliases, alias to source, both normalized.
    aliases: BTreeMap<String, String>,
    /// Positions in `approvals` by repository and release line.
    index: HashMap<Repository, HashMap<String, Vec<usize>>>,
}

/// Outcome of a lookup for one image.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// An approval for this repository and release line applies in this namespace.
    Found(&'a Approval),
    /// An approval exists for this line, but not for this namespace.
    NamespaceOutOfScope(&'a Approval),
    /// No approval for this repository and release line.
    None,
}

impl Approvals {
    /// Returns approvals that approve nothing, the same as an empty document.
    pub fn empty() -> Approvals {
        Approvals::default()
    }

    /// Parses and validates a document. Invalid entries are skipped and returned beside the result.
    pub fn parse(document: &str) -> Result<(Approvals, Vec<EntryError>), DocumentError> {
        parse::parse(document)
    }

    /// Returns the repository of `image` after registry aliases (`mirror.gcr.io` → `docker.io`).
    pub fn source_repository(&self, image: &ImageRef) -> Repository {
        self.resolve(&image.repository)
    }

    /// Applies registry aliases to a repository. A repository on a source registry is
    /// returned unchanged, because an alias never points at another alias.
    fn resolve(&self, repository: &Repository) -> Repository {
        match self.aliases.get(&repository.registry) {
            Some(source) => Repository::new(source, &repository.path),
            None => repository.clone(),
        }
    }

    /// Returns the first policy whose glob matches `repository`, after registry aliases.
    pub fn policy_for(&self, repository: &Repository) -> Option<&Policy> {
        if self.aliases.contains_key(&repository.registry) {
            let source = self.resolve(repository);
            return self.first_policy(&source);
        }
        self.first_policy(repository)
    }

    fn first_policy(&self, repository: &Repository) -> Option<&Policy> {
        let position = self.globs.iter().position(|glob| glob.matches(repository))?;
        self.policies.get(position)
    }

    /// Returns the scheme for `repository`: its policy's, else `patch-suffix`.
    pub fn scheme_for(&self, repository: &Repository) -> &Scheme {
        self.policy_for(repository).map_or(&DEFAULT_SCHEME, |policy| &policy.scheme)
    }

    /// Returns the mode for `repository`: its policy's, else notify.
    pub fn mode_for(&self, repository: &Repository) -> Mode {
        self.policy_for(repository).map_or(Mode::Notify, |policy| policy.mode)
    }

    /// Looks up the approval for `repository`'s release line of `running_tag` in `namespace`.
    ///
    /// `repository` may be written through an alias; it is resolved first. A running tag
    /// outside the repository's scheme has no release line and finds nothing.
    pub fn lookup(&self, repository: &Repository, running_tag: &str, namespace: &str) -> Lookup<'_> {
        if self.approvals.is_empty() {
            return Lookup::None;
        }
        let resolved;
        let repository = if self.aliases.contains_key(&repository.registry) {
            resolved = self.resolve(repository);
            &resolved
        } else {
            repository
        };
        let Some(running) = self.scheme_for(repository).parse(running_tag) else {
            return Lookup::None;
        };
        self.lookup_line(repository, &running.line, namespace)
    }

    /// Finds the approval for a source repository's release `line` in `namespace`.
    pub fn lookup_line(&self, repository: &Repository, line: &str, namespace: &str) -> Lookup<'_> {
        let Some(positions) = self.index.get(repository).and_then(|lines| lines.get(line)) else {
            return Lookup::None;
        };
        let mut approvals = positions.iter().filter_map(|&position| self.approvals.get(position));
        let Some(first) = approvals.clone().next() else {
            return Lookup::None;
        };
        // Approvals of one line never overlap in namespaces, so at most one applies.
        match approvals.find(|approval| approval.applies_in(namespace)) {
            Some(approval) => Lookup::Found(approval),
            None => Lookup::NamespaceOutOfScope(first),
        }
    }

    /// Returns every valid approval, in document order.
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }

    /// Returns every valid policy, in document order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Returns every valid registry alias, alias to source, ordered by alias.
    pub fn registry_aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Builds the example document of the approvals ConfigMap, with a real digest.
    fn example() -> String {
        format!(
            r#"approvals:
  - image: mojaloop/quoting-service     # any spelling that normalizes to the repository
    version: v10.4.0
    patch: v10.4.0.2-patch
    digest: {DIGEST}
    namespaces: [mojaloop]
    approvedBy: ops@example.org
    note: fixes a vulnerable dependency
policies:
  - image: mojaloop/ml-api-adapter
    scheme: suffix-counter
    suffix: hotfix
  - image: mojaloop/*
    scheme: patch-suffix
    mode: auto
  - image: docker.io/library/mysql
    scheme: semver-patch
  - image: registry.example.org/team/*
    scheme: regex
    pattern: '^v(?P<line>\d+\.\d+\.\d+)(?:-p(?P<level>\d+))?$'
registries:
  mirror.gcr.io: docker.io
"#
        )
    }

    fn parse_valid(document: &str) -> Approvals {
        let (approvals, errors) = Approvals::parse(document).expect("document parses");
        assert_eq!(errors, Vec::new());
        approvals
    }

    fn parse_with_errors(document: &str) -> (Approvals, Vec<EntryError>) {
        Approvals::parse(document).expect("document parses")
    }

    fn repository(name: &str) -> Repository {
        Repository::parse(name).expect("name is valid")
    }

    #[test]
    fn example_document_parses() {
        let approvals = parse_valid(&example());

        let [approval] = approvals.approvals() else {
            panic!("expected one approval, got {:?}", approvals.approvals());
        };
        assert_eq!(approval.index, 0);
        assert_eq!(approval.line, 2);
        assert_eq!(approval.repository, repository("docker.io/mojaloop/quoting-service"));
        assert_eq!(approval.version, "v10.4.0");
        assert_eq!(approval.patch, "v10.4.0.2-patch");
        assert_eq!(approval.patch_version, crate::scheme::TagVersion { line: "v10.4.0".to_owned(), level: 2 });
        assert_eq!(approval.digest.as_deref(), Some(DIGEST));
        assert_eq!(approval.namespaces, Some(vec!["mojaloop".to_owned()]));
        assert_eq!(approval.approved_by.as_deref(), Some("ops@example.org"));
        assert_eq!(approval.note.as_deref(), Some("fixes a vulnerable dependency"));

        let patterns: Vec<&str> = approvals.policies().iter().map(|policy| policy.pattern.as_str()).collect();
        assert_eq!(patterns, ["docker.io/mojaloop/ml-api-adapter", "docker.io/mojaloop/*", "docker.io/library/mysql", "registry.example.org/team/*"]);
        let schemes: Vec<&str> = approvals.policies().iter().map(|policy| policy.scheme.name()).collect();
        assert_eq!(schemes, ["suffix-counter", "patch-suffix", "semver-patch", "regex"]);
        let modes: Vec<Mode> = approvals.policies().iter().map(|policy| policy.mode).collect();
        assert_eq!(modes, [Mode::Notify, Mode::Auto, Mode::Notify, Mode::Notify]);
        assert_eq!(approvals.registry_aliases().get("mirror.gcr.io").map(String::as_str), Some("docker.io"));
    }

    #[rstest]
    #[case::empty("")]
    #[case::comment("# nothing approved yet\n")]
    #[case::null("~")]
    #[case::empty_mapping("{}")]
    #[case::null_sections("approvals:\npolicies:\nregistries:\n")]
    #[case::empty_sections("approvals: []\npolicies: []\nregistries: {}\n")]
    fn empty_document_approves_nothing(#[case] document: &str) {
        let approvals = parse_valid(document);
        assert!(approvals.approvals().is_empty());
        assert!(approvals.policies().is_empty());
        assert!(approvals.registry_aliases().is_empty());
    }

    #[rstest]
    #[case::syntax("approvals:\n  - image: a\n   bad: [\n", "line 3")]
    #[case::tabs("approvals:\n\t- image: a\n", "line 2")]
    #[case::unknown_key("approval:\n  - image: a\n", r#"unknown top-level key "approval""#)]
    #[case::non_string_key("1: x\n", "unknown top-level key that is not a string")]
    #[case::list_root("- image: a\n", "must be a mapping")]
    #[case::scalar_root("approvals", "must be a mapping")]
    #[case::approvals_mapping("approvals:\n  image: a\n", "approvals must be a list")]
    #[case::policies_scalar("policies: mojaloop/*\n", "policies must be a list")]
    #[case::registries_list("registries:\n  - mirror.gcr.io\n", "registries must be a mapping")]
    #[case::duplicate_key("approvals: []\napprovals: []\n", "duplicate")]
    #[case::two_documents("approvals: []\n---\napprovals: []\n", "more than one document")]
    fn document_error(#[case] document: &str, #[case] expected: &str) {
        let error = Approvals::parse(document).expect_err("document is invalid").to_string();
        assert!(error.starts_with("approvals document is invalid: "), "{error:?}");
        assert!(error.contains(expected), "{error:?} does not contain {expected:?}");
    }

    /// Parses a document with one approval `entry` (YAML lines under `- `) and returns its
    /// only error.
    fn approval_error(entry: &str) -> EntryError {
        let document = format!("policies:\n  - image: mysql\n    scheme: semver-patch\napprovals:\n  - {}\n", entry.replace('\n', "\n    "));
        let (approvals, errors) = parse_with_errors(&document);
        assert!(approvals.approvals().is_empty(), "the entry was kept: {:?}", approvals.approvals());
        let [error] = errors.as_slice() else {
            panic!("expected one error, got {errors:?}");
        };
        assert_eq!((error.section, error.index, error.line), ("approvals", 0, 5));
        error.clone()
    }

    #[rstest]
    #[case::unknown_key("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespace: [x]", "unknown field `namespace`")]
    #[case::missing_patch("image: a\nversion: v1.0.0", "missing field `patch`")]
    #[case::number_patch("image: mysql\nversion: 8.0.1\npatch: 8.1", "invalid type: floating point `8.1`, expected a string; quote tags")]
    #[case::invalid_image("image: Mojaloop/Quoting\nversion: v1.0.0\npatch: v1.0.0.1-patch", r#"repository "Mojaloop/Quoting" must be lowercase"#)]
    #[case::image_with_tag("image: a:v1.0.0\nversion: v1.0.0\npatch: v1.0.0.1-patch", "has a tag or digest")]
    #[case::version_outside("image: a\nversion: latest\npatch: v1.0.0.1-patch", r#"version "latest" is outside the patch-suffix scheme of docker.io/library/a"#)]
    #[case::patch_outside("image: a\nversion: v1.0.0\npatch: v1.0.0.1-pisp", r#"patch "v1.0.0.1-pisp" is outside the patch-suffix scheme"#)]
    #[case::patch_snapshot("image: a\nversion: v1.0.0\npatch: v1.0.0.160-snapshot.7", "is outside the patch-suffix scheme")]
    #[case::patch_other_line("image: a\nversion: v1.0.0\npatch: v1.0.1.1-patch", r#"patch "v1.0.1.1-patch" is in release line "v1.0.1", but version "v1.0.0" is in release line "v1.0.0""#)]
    #[case::patch_other_prefix("image: a\nversion: v1.0.0\npatch: 1.0.0.1-patch", "is in release line \"1.0.0\"")]
    #[case::patch_same_level("image: a\nversion: v1.0.0.2-patch\npatch: v1.0.0.2-patch", "(level 2) is not newer than version")]
    #[case::patch_older("image: a\nversion: v1.0.0.3-patch\npatch: v1.0.0.2-patch", "is not newer than version")]
    #[case::semver_other_line("image: mysql\nversion: 8.0.1\npatch: 8.1.0", "release line")]
    #[case::semver_base_patch("image: mysql\nversion: 8.0.1\npatch: 8.0.1.1-patch", "outside the semver-patch scheme")]
    #[case::short_digest("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\ndigest: sha256:abc", r#"digest "sha256:abc" is invalid"#)]
    #[case::sha512_digest(&format!("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\ndigest: sha512:{}", "a".repeat(128)), "is invalid")]
    #[case::uppercase_digest(&format!("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\ndigest: sha256:{}", "A".repeat(64)), "is invalid")]
    #[case::empty_namespaces("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespaces: []", "namespaces is empty")]
    #[case::uppercase_namespace("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespaces: [Mojaloop]", r#"namespace "Mojaloop" is not a valid namespace name"#)]
    #[case::long_namespace(&format!("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespaces: [{}]", "a".repeat(64)), "is not a valid namespace name")]
    #[case::dash_namespace("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespaces: [-x]", "is not a valid namespace name")]
    #[case::namespace_list_scalar("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\nnamespaces: mojaloop", "invalid type")]
    fn approval_entry_error(#[case] entry: &str, #[case] expected: &str) {
        let error = approval_error(entry);
        assert!(error.message.contains(expected), "{:?} does not contain {expected:?}", error.message);
    }

    #[test]
    fn entry_error_display() {
        let error = approval_error("image: a\nversion: v1.0.0\npatch: v1.0.0.1-patch\ndigest: sha256:abc");
        assert_eq!(
            error.to_string(),
            r#"approvals[0] (line 5): digest "sha256:abc" is invalid; write sha256: followed by 64 lowercase hex digits"#
        );
    }

    #[test]
    fn invalid_entry_skipped_others_kept() {
        let document = "\
approvals:
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.1-patch
  - image: mojaloop/b
    version: v1.0.0
    patch: v1.0.0.1-patch
    approvedby: typo
  - image: mojaloop/c
    version: v1.0.0
    patch: v1.0.0.1-patch
";
        let (approvals, errors) = parse_with_errors(document);
        let kept: Vec<(usize, usize)> = approvals.approvals().iter().map(|approval| (approval.index, approval.line)).collect();
        assert_eq!(kept, [(0, 2), (2, 9)]);
        let reported: Vec<(&str, usize, usize)> = errors.iter().map(|error| (error.section, error.index, error.line)).collect();
        assert_eq!(reported, [("approvals", 1, 5)]);
        assert!(errors[0].message.contains("unknown field `approvedby`"), "{}", errors[0].message);
    }

    #[rstest]
    #[case::both_everywhere(None, None, Some("in every namespace"))]
    #[case::everywhere_and_one(None, Some("[b]"), Some("in namespace b"))]
    #[case::one_and_everywhere(Some("[a, b]"), None, Some("in namespaces a, b"))]
    #[case::shared(Some("[a, b, c]"), Some("[c, b]"), Some("in namespaces b, c"))]
    #[case::disjoint(Some("[a]"), Some("[b]"), None)]
    fn approval_conflict(#[case] first: Option<&str>, #[case] second: Option<&str>, #[case] scope: Option<&str>) {
        let namespaces = |list: Option<&str>| list.map(|list| format!("    namespaces: {list}\n")).unwrap_or_default();
        let document = format!(
            "approvals:\n  - image: mojaloop/a\n    version: v1.0.0\n    patch: v1.0.0.1-patch\n{}  - image: docker.io/mojaloop/a\n    version: v1.0.0.1-patch\n    patch: v1.0.0.2-patch\n{}",
            namespaces(first),
            namespaces(second),
        );
        let (approvals, errors) = parse_with_errors(&document);
        match scope {
            Some(scope) => {
                assert_eq!(approvals.approvals().len(), 1);
                assert_eq!(approvals.approvals()[0].index, 0);
                let [error] = errors.as_slice() else {
                    panic!("expected one error, got {errors:?}");
                };
                assert_eq!((error.section, error.index), ("approvals", 1));
                let expected = format!(
                    "conflicts with approvals[0] (line 2): both approve release line \"v1.0.0\" of docker.io/mojaloop/a {scope}; remove one or give them different namespaces"
                );
                assert_eq!(error.message, expected);
            }
            None => {
                assert_eq!(errors, Vec::new());
                assert_eq!(approvals.approvals().len(), 2);
            }
        }
    }

    #[test]
    fn approvals_of_other_lines_coexist() {
        let document = "\
approvals:
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.1-patch
  - image: mojaloop/a
    version: v1.1.0
    patch: v1.1.0.3-patch
  - image: harbor.local/mojaloop/a
    version: v1.0.0
    patch: v1.0.0.1-patch
";
        assert_eq!(parse_valid(document).approvals().len(), 3);
    }

    #[test]
    fn alias_conflicts_with_source() {
        let document = "\
registries:
  mirror.gcr.io: docker.io
approvals:
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.1-patch
  - image: mirror.gcr.io/mojaloop/a
    version: v1.0.0
    patch: v1.0.0.2-patch
";
        let (approvals, errors) = parse_with_errors(document);
        assert_eq!(approvals.approvals().len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("conflicts with approvals[0] (line 4)"), "{}", errors[0].message);
    }

    #[test]
    fn scheme_from_policy_checks_approval() {
        let document = "\
policies:
  - image: mojaloop/ml-api-adapter
    scheme: suffix-counter
    suffix: hotfix
approvals:
  - image: mojaloop/ml-api-adapter
    version: v9.3.0
    patch: v9.3.0-hotfix.2
  - image: mojaloop/ml-api-adapter
    version: v9.4.0
    patch: v9.4.0.1-patch
";
        let (approvals, errors) = parse_with_errors(document);
        assert_eq!(approvals.approvals().len(), 1);
        assert_eq!(approvals.approvals()[0].patch_version.level, 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("outside the suffix-counter scheme"), "{}", errors[0].message);
    }

    /// Parses a document with one policy `entry` and returns its only error.
    fn policy_error(entry: &str) -> EntryError {
        let document = format!("policies:\n  - image: mojaloop/*\n  - {}\n", entry.replace('\n', "\n    "));
        let (approvals, errors) = parse_with_errors(&document);
        assert_eq!(approvals.policies().len(), 1, "the entry was kept");
        let [error] = errors.as_slice() else {
            panic!("expected one error, got {errors:?}");
        };
        assert_eq!((error.section, error.index, error.line), ("policies", 1, 3));
        error.clone()
    }

    #[rstest]
    #[case::unknown_key("image: a\nschema: semver-patch", "unknown field `schema`")]
    #[case::unknown_scheme("image: a\nscheme: calver", r#"unknown scheme "calver""#)]
    #[case::unknown_mode("image: a\nmode: automatic", "unknown variant `automatic`")]
    #[case::missing_suffix("image: a\nscheme: suffix-counter", "needs the word it counts")]
    #[case::invalid_suffix("image: a\nscheme: suffix-counter\nsuffix: hot-fix", r#"invalid suffix "hot-fix""#)]
    #[case::stray_suffix("image: a\nsuffix: hotfix", "suffix is only read by the suffix-counter scheme, not patch-suffix")]
    #[case::missing_pattern("image: a\nscheme: regex", "needs a pattern")]
    #[case::stray_pattern("image: a\nscheme: semver-patch\npattern: x", "pattern is only read by the regex scheme, not semver-patch")]
    #[case::bad_pattern("image: a\nscheme: regex\npattern: '(?P<line>'", "invalid pattern")]
    #[case::no_line_group("image: a\nscheme: regex\npattern: 'v(?P<level>\\d+)'", "named group (?P<line>...)")]
    #[case::huge_pattern("image: a\nscheme: regex\npattern: '(?P<line>(\\w{100}){100}){100}'", "invalid pattern")]
    #[case::glob_with_tag("image: a:v1", "has a tag or digest")]
    #[case::uppercase_glob("image: Mojaloop/*", "invalid path")]
    #[case::same_glob("image: docker.io/mojaloop/*", r#"conflicts with policies[0] (line 2), which has the same glob "docker.io/mojaloop/*""#)]
    fn policy_entry_error(#[case] entry: &str, #[case] expected: &str) {
        let error = policy_error(entry);
        assert!(error.message.contains(expected), "{:?} does not contain {expected:?}", error.message);
    }

    /// Parses a document whose `registries` are `entries` and returns aliases and errors.
    fn registries(entries: &str) -> (BTreeMap<String, String>, Vec<EntryError>) {
        let (approvals, errors) = parse_with_errors(&format!("registries:\n{entries}"));
        (approvals.registry_aliases().clone(), errors)
    }

    #[test]
    fn registries_normalized() {
        let (aliases, errors) = registries("  Mirror.GCR.io: index.docker.io\n  harbor.local:5000: ghcr.io\n");
        assert_eq!(errors, Vec::new());
        let aliases: Vec<(&str, &str)> = aliases.iter().map(|(alias, source)| (alias.as_str(), source.as_str())).collect();
        assert_eq!(aliases, [("harbor.local:5000", "ghcr.io"), ("mirror.gcr.io", "docker.io")]);
    }

    #[rstest]
    #[case::invalid_alias("  bad_host: docker.io\n", 0, 2, r#"alias "bad_host" is not a valid host name"#)]
    #[case::invalid_source("  mirror.gcr.io: docker.io/library\n", 0, 2, r#"source "docker.io/library" is not a valid host name"#)]
    #[case::not_a_string("  mirror.gcr.io: [docker.io]\n", 0, 2, "must both be registry host names")]
    #[case::itself("  docker.io: index.docker.io\n", 0, 2, r#"alias "docker.io" names itself as its source"#)]
    #[case::twice("  mirror.gcr.io: docker.io\n  MIRROR.gcr.io: ghcr.io\n", 1, 3, r#"alias "mirror.gcr.io" conflicts with registries[0] (line 2)"#)]
    #[case::chain("  a.io: b.io\n  b.io: c.io\n", 0, 2, r#"source "b.io" of alias "a.io" is itself an alias (registries[1], line 3)"#)]
    fn registries_entry_error(#[case] entries: &str, #[case] index: usize, #[case] line: usize, #[case] expected: &str) {
        let (_, errors) = registries(entries);
        let [error] = errors.as_slice() else {
            panic!("expected one error, got {errors:?}");
        };
        assert_eq!((error.section, error.index, error.line), ("registries", index, line));
        assert!(error.message.contains(expected), "{:?} does not contain {expected:?}", error.message);
    }

    #[rstest]
    #[case("mojaloop/quoting-service", "docker.io/mojaloop/quoting-service")]
    #[case("mirror.gcr.io/mojaloop/quoting-service", "docker.io/mojaloop/quoting-service")]
    #[case("mirror.gcr.io/mysql", "docker.io/library/mysql")]
    #[case("mirror.gcr.io/library/mysql", "docker.io/library/mysql")]
    #[case("harbor.local/mojaloop/quoting-service", "harbor.local/mojaloop/quoting-service")]
    fn source_repository_applies_aliases(#[case] image: &str, #[case] expected: &str) {
        let approvals = parse_valid(&example());
        let image = ImageRef::parse(image).expect("reference is valid");
        assert_eq!(approvals.source_repository(&image).to_string(), expected);
    }

    #[rstest]
    #[case("docker.io/mojaloop/ml-api-adapter", Some(0), "suffix-counter")]
    #[case("mirror.gcr.io/mojaloop/ml-api-adapter", Some(0), "suffix-counter")]
    #[case("docker.io/mojaloop/quoting-service", Some(1), "patch-suffix")]
    #[case("docker.io/mojaloop/tools/curl", None, "patch-suffix")]
    #[case("docker.io/library/mysql", Some(2), "semver-patch")]
    #[case("docker.io/library/postgres", None, "patch-suffix")]
    #[case("registry.example.org/team/app", Some(3), "regex")]
    #[case("harbor.local/mojaloop/quoting-service", None, "patch-suffix")]
    fn policy_first_match_wins(#[case] name: &str, #[case] index: Option<usize>, #[case] scheme: &str) {
        let approvals = parse_valid(&example());
        let repository = repository(name);
        assert_eq!(approvals.policy_for(&repository).map(|policy| policy.index), index);
        assert_eq!(approvals.scheme_for(&repository).name(), scheme);
    }

    #[test]
    fn mode_follows_policy() {
        let approvals = parse_valid(&example());
        assert_eq!(approvals.mode_for(&repository("mojaloop/quoting-service")), Mode::Auto);
        assert_eq!(approvals.mode_for(&repository("mysql")), Mode::Notify);
        assert_eq!(approvals.mode_for(&repository("harbor.local/x")), Mode::Notify);
    }

    #[test]
    fn skipped_policy_keeps_order() {
        let document = "policies:\n  - image: mojaloop/a\n    scheme: nope\n  - image: mojaloop/*\n    scheme: semver-patch\n";
        let (approvals, errors) = parse_with_errors(document);
        assert_eq!(errors.len(), 1);
        let policy = approvals.policy_for(&repository("mojaloop/a")).expect("a policy matches");
        assert_eq!(policy.index, 1);
    }

    fn namespaced() -> Approvals {
        parse_valid(
            "\
approvals:
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.2-patch
    namespaces: [blue]
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.3-patch
    namespaces: [green, green]
  - image: mojaloop/b
    version: v2.0.0
    patch: v2.0.0.1-patch
registries:
  mirror.gcr.io: docker.io
",
        )
    }

    #[rstest]
    #[case("mojaloop/a", "v1.0.0", "blue", Some(0))]
    #[case("mojaloop/a", "v1.0.0.1-patch", "green", Some(1))]
    #[case("mirror.gcr.io/mojaloop/a", "v1.0.0", "green", Some(1))]
    #[case("mojaloop/b", "v2.0.0", "anywhere", Some(2))]
    #[case("mojaloop/b", "v2.0.0.7-patch", "anywhere", Some(2))]
    fn lookup_finds(#[case] name: &str, #[case] tag: &str, #[case] namespace: &str, #[case] index: Option<usize>) {
        let approvals = namespaced();
        let found = match approvals.lookup(&repository(name), tag, namespace) {
            Lookup::Found(approval) => Some(approval.index),
            other => panic!("expected an approval, got {other:?}"),
        };
        assert_eq!(found, index);
    }

    #[test]
    fn lookup_namespace_out_of_scope() {
        let approvals = namespaced();
        assert!(matches!(approvals.lookup(&repository("mojaloop/a"), "v1.0.0", "red"), Lookup::NamespaceOutOfScope(approval) if approval.index == 0));
    }

    #[rstest]
    #[case("mojaloop/a", "v1.0.1")]
    #[case("mojaloop/a", "latest")]
    #[case("mojaloop/a", "1.0.0")]
    #[case("mojaloop/c", "v1.0.0")]
    #[case("harbor.local/mojaloop/a", "v1.0.0")]
    fn lookup_none(#[case] name: &str, #[case] tag: &str) {
        let approvals = namespaced();
        assert!(matches!(approvals.lookup(&repository(name), tag, "blue"), Lookup::None));
    }

    #[test]
    fn repeated_namespaces_kept_once() {
        assert_eq!(namespaced().approvals()[1].namespaces, Some(vec!["green".to_owned()]));
    }

    #[test]
    fn empty_approvals_find_nothing() {
        let approvals = Approvals::empty();
        assert!(matches!(approvals.lookup(&repository("mojaloop/a"), "v1.0.0", "x"), Lookup::None));
        assert_eq!(approvals.scheme_for(&repository("mojaloop/a")).name(), "patch-suffix");
        assert!(approvals.policy_for(&repository("mojaloop/a")).is_none());
    }

    #[test]
    fn append_approval_keeps_other_entries() {
        let document = "\
approvals:
  - image: mojaloop/a
    version: v1.0.0
    patch: v1.0.0.1-patch
    typo: kept
policies:
  - image: mojaloop/*
    mode: auto
";
        let entry = ApprovalEntry {
            image: "mojaloop/b".to_owned(),
            version: "v2.0.0".to_owned(),
            patch: "v2.0.0.1-patch".to_owned(),
            approved_by: Some("image-patch-scanner".to_owned()),
            ..ApprovalEntry::default()
        };
        let written = append_approval(document, &entry).expect("approval appended");
        let (approvals, errors) = parse_with_errors(&written);
        assert_eq!(errors.len(), 1, "the invalid entry stays: {errors:?}");
        assert_eq!(errors[0].index, 0);
        let [approval] = approvals.approvals() else {
            panic!("expected the appended approval, got {:?}", approvals.approvals());
        };
        assert_eq!(approval.index, 1);
        assert_eq!(approval.approved_by.as_deref(), Some("image-patch-scanner"));
        assert_eq!(approvals.policies().len(), 1);
        assert!(written.contains("approvedBy: image-patch-scanner"), "{written}");
    }

    #[rstest]
    #[case::empty("")]
    #[case::no_approvals("policies: []\n")]
    #[case::null_approvals("approvals:\n")]
    fn append_approval_creates_list(#[case] document: &str) {
        let entry = ApprovalEntry { image: "a".to_owned(), version: "v1.0.0".to_owned(), patch: "v1.0.0.1-patch".to_owned(), ..ApprovalEntry::default() };
        let written = append_approval(document, &entry).expect("approval appended");
        assert_eq!(parse_valid(&written).approvals().len(), 1);
    }

    #[rstest]
    #[case::syntax("approvals: [\n", "approvals document is invalid")]
    #[case::list_root("- a\n", "must be a mapping")]
    #[case::approvals_scalar("approvals: x\n", "approvals must be a list")]
    fn append_approval_rejects(#[case] document: &str, #[case] expected: &str) {
        let error = append_approval(document, &ApprovalEntry::default()).expect_err("document is unusable").to_string();
        assert!(error.contains(expected), "{error:?} does not contain {expected:?}");
    }

    #[test]
    fn document_model_round_trips() {
        let document: Document = serde_yaml_ng::from_str(&example()).expect("example matches the model");
        assert_eq!(document.approvals.len(), 1);
        assert_eq!(document.policies[1].mode, Some(Mode::Auto));
        let written = document.to_yaml().expect("document serializes");
        let reread: Document = serde_yaml_ng::from_str(&written).expect("written document matches the model");
        assert_eq!(reread, document);
        assert_eq!(parse_valid(&written).policies().len(), 4);
    }

    #[test]
    fn document_model_rejects_unknown_key() {
        let error = serde_yaml_ng::from_str::<Document>("approvals: []\nextra: 1\n").expect_err("unknown key").to_string();
        assert!(error.contains("unknown field `extra`"), "{error}");
    }
}
