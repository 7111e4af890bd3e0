//! The approvals document (ConfigMap `image-patch-approvals`, key `approvals.yaml`).

use crate::reference::{ImageRef, Repository};
use crate::scheme::Scheme;

/// Name of the approvals ConfigMap.
pub const CONFIGMAP_NAME: &str = "image-patch-approvals";
/// Key of the document in the approvals ConfigMap.
pub const CONFIGMAP_KEY: &str = "approvals.yaml";

/// One valid approval entry.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Position in the `approvals` list, from 0.
    pub index: usize,
    /// Line of the entry in the document, from 1.
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

/// Whether the scanner only notifies or approves new patches itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Position in that list, from 0.
    pub index: usize,
    /// Line in the document, from 1.
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

/// The valid part of an approvals document, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    _private: (),
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
    /// Parses and validates a document. Invalid entries are skipped and returned beside the result.
    pub fn parse(document: &str) -> Result<(Approvals, Vec<EntryError>), DocumentError> {
        let _ = document;
        todo!()
    }

    /// The repository of `image` after registry aliases (`mirror.gcr.io` → `docker.io`).
    pub fn source_repository(&self, image: &ImageRef) -> Repository {
        let _ = image;
        todo!()
    }

    /// The first policy whose glob matches `repository`.
    pub fn policy_for(&self, repository: &Repository) -> Option<&Policy> {
        let _ = repository;
        todo!()
    }

    /// The scheme for `repository`: its policy's, else `patch-suffix`.
    pub fn scheme_for(&self, repository: &Repository) -> &Scheme {
        let _ = repository;
        todo!()
    }

    /// The approval for `repository`'s release line of `running_tag` in `namespace`.
    pub fn lookup(&self, repository: &Repository, running_tag: &str, namespace: &str) -> Lookup<'_> {
        let _ = (repository, running_tag, namespace);
        todo!()
    }

    /// Every valid approval, in document order.
    pub fn approvals(&self) -> &[Approval] {
        todo!()
    }

    /// Every valid policy, in document order.
    pub fn policies(&self) -> &[Policy] {
        todo!()
    }
}
