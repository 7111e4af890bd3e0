//! Image references: parsing, Docker's normalization and canonical display.

use std::fmt;

/// A normalized repository: registry host (with port) and repository path,
/// after `docker.io` defaults, `library/` and registry aliases.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// Registry host, `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, `library/mysql` for `mysql`.
    pub path: String,
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// A parsed image reference `[registry[:port]/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The normalized repository (no alias applied: the registry is as written).
    pub repository: Repository,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:<64 hex>`), if any.
    pub digest: Option<String>,
    /// The name part exactly as written, before `:tag` and `@digest`; rewrites keep it.
    pub written_name: String,
}

/// Why an image reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Placeholder; the implementation names each invalid part.
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid {
        /// The reference as given.
        reference: String,
        /// Which part is wrong and how to fix it.
        reason: String,
    },
}

impl ImageRef {
    /// Parses and normalizes a reference.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        let _ = reference;
        todo!()
    }

    /// The reference as written, with the tag and digest replaced: the name part is kept
    /// letter for letter, so a registry alias or a short Docker Hub name survives a rewrite.
    pub fn with_tag(&self, tag: &str, digest: Option<&str>) -> String {
        let _ = (tag, digest);
        todo!()
    }
}

impl fmt::Display for ImageRef {
    /// Canonical form: `registry/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
