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
//!   key, a root that is not a mapping, a top-level key other than `approvals`,
//!   `policies` and `registries`, or a section of the wrong type (`approvals` that is not
//!   a list). A misspelled section name would otherwise drop every approval at once and
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
    /// Who approved it.
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
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A document that cannot be used at all; the last good approvals stay in force.
#[derive(Debug, thiserror::Error)]
#[error("approvals document is invalid: {message}")]
pub struct DocumentError {
    /// What is wrong, with line and column when the parser knows them.
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

    /// The repository of `image` after registry aliases (`mirror.gcr.io` → `docker.io`).
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

    /// The first policy whose glob matches `repository`, after registry aliases.
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

    /// The scheme for `repository`: its policy's, else `patch-suffix`.
    pub fn scheme_for(&self, repository: &Repository) -> &Scheme {
        self.policy_for(repository).map_or(&DEFAULT_SCHEME, |policy| &policy.scheme)
    }

    /// The mode for `repository`: its policy's, else notify.
    pub fn mode_for(&self, repository: &Repository) -> Mode {
        self.policy_for(repository).map_or(Mode::Notify, |policy| policy.mode)
    }

    /// The approval for `repository`'s release line of `running_tag` in `namespace`.
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

    /// The approval for a source repository's release `line` in `namespace`.
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

    /// Every valid approval, in document order.
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }

    /// Every valid policy, in document order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Every valid registry alias, alias to source, ordered by alias.
    pub fn registry_aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }
}
