//! Image references: parsing, Docker's normalization and canonical display.
//!
//! The grammar is the OCI distribution one, `[registry[:port]/]path[:tag][@digest]`:
//!
//! 1. The digest is everything after the first `@`.
//! 2. The tag is what follows a `:` in the last `/`-separated part, so the port of
//!    `harbor.local:5000/mojaloop/central-ledger` is never read as a tag.
//! 3. The first `/`-separated part is a registry when it contains `.` or `:`, is
//!    `localhost`, or is a bracketed IPv6 address. Otherwise the registry is `docker.io`.
//!    Docker also reads a first part with uppercase letters as a registry; here it stays
//!    part of the path, so `Mojaloop/Quoting` is reported as an uppercase repository.
//! 4. Docker's normalization: the registry host is lowercased, `index.docker.io` becomes
//!    `docker.io`, and a one-part Docker Hub path gets `library/`.
//!
//! Registry aliases (`mirror.gcr.io` serving `docker.io`) are not applied here: they come
//! from the approvals document, see `Approvals::source_repository`.

use std::fmt;

/// Default registry of names without one.
pub const DOCKER_HUB: &str = "docker.io";

/// Maximum length of the name part (registry and path), as Docker enforces it.
pub const MAX_NAME_LENGTH: usize = 255;

/// A normalized repository: registry host (with port) and repository path,
/// after `docker.io` defaults and `library/`, and after registry aliases where the
/// value comes from `Approvals::source_repository`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// Registry host, `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, `library/mysql` for `mysql`.
    pub path: String,
}

impl Repository {
    /// Builds a repository on `registry`, normalizing the path as Docker does for Docker
    /// Hub (`mysql` becomes `library/mysql`). Both parts must already be valid.
    pub fn new(registry: &str, path: &str) -> Repository {
        let path = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
        Repository { registry: registry.to_owned(), path }
    }

    /// Parses a name without tag or digest (`mojaloop/quoting-service`) into its
    /// normalized repository.
    pub fn parse(name: &str) -> Result<Repository, ReferenceError> {
        let image = ImageRef::parse(name)?;
        if image.tag.is_some() || image.digest.is_some() {
            return Err(ReferenceError::UnexpectedTagOrDigest { reference: name.to_owned() });
        }
        Ok(image.repository)
    }
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

/// Why an image reference is invalid. Each variant names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is an empty string.
    #[error("invalid image reference \"\": it is empty; write a name such as mojaloop/quoting-service:v10.4.0")]
    Empty,
    /// The name part is longer than Docker allows.
    #[error("invalid image reference {reference:?}: the name is {length} characters long, the maximum is {MAX_NAME_LENGTH}")]
    NameTooLong {
        /// The reference as given.
        reference: String,
        /// Length of the name part, in bytes.
        length: usize,
    },
    /// The registry host or port is malformed.
    #[error("invalid image reference {reference:?}: registry {registry:?} {reason}")]
    InvalidRegistry {
        /// The reference as given.
        reference: String,
        /// The registry as written.
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The repository path has uppercase letters.
    #[error("invalid image reference {reference:?}: repository {repository:?} must be lowercase")]
    UppercaseRepository {
        /// The reference as given.
        reference: String,
        /// The repository path as written.
        repository: String,
    },
    /// The repository path breaks the grammar in another way.
    #[error("invalid image reference {reference:?}: repository {repository:?} {reason}")]
    InvalidRepository {
        /// The reference as given.
        reference: String,
        /// The repository path as written.
        repository: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The tag breaks the grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid image reference {reference:?}: tag {tag:?} {reason}")]
    InvalidTag {
        /// The reference as given.
        reference: String,
        /// The tag as written.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The digest is malformed or uses an unsupported algorithm.
    #[error("invalid image reference {reference:?}: digest {digest:?} {reason}")]
    InvalidDigest {
        /// The reference as given.
        reference: String,
        /// The digest as written.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tag or digest was given where only a name is allowed.
    #[error("invalid image name {reference:?}: remove the tag and digest, only the repository is expected here")]
    UnexpectedTagOrDigest {
        /// The name as given.
        reference: String,
    },
}

impl ImageRef {
    /// Parses and normalizes a reference.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }

        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        if let Some(digest) = digest {
            check_digest(digest).map_err(|reason| ReferenceError::InvalidDigest {
                reference: reference.to_owned(),
                digest: digest.to_owned(),
                reason,
            })?;
        }

        // The tag can only sit in the last path part; an earlier `:` belongs to a port.
        let last_part_start = rest.rfind('/').map_or(0, |slash| slash + 1);
        let (name, tag) = match rest[last_part_start..].find(':') {
            Some(colon) => {
                let colon = last_part_start + colon;
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
                reference: reference.to_owned(),
                tag: tag.to_owned(),
                reason,
            })?;
        }

        if name.len() > MAX_NAME_LENGTH {
            return Err(ReferenceError::NameTooLong { reference: reference.to_owned(), length: name.len() });
        }
        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(registry) => normalize_registry(registry).map_err(|reason| ReferenceError::InvalidRegistry {
                reference: reference.to_owned(),
                registry: registry.to_owned(),
                reason,
            })?,
            None => DOCKER_HUB.to_owned(),
        };
        check_path(path, reference)?;
        if registry == DOCKER_HUB && tag.is_none() && digest.is_none() && is_image_id(path) {
            return Err(ReferenceError::InvalidRepository {
                reference: reference.to_owned(),
                repository: path.to_owned(),
                reason: "is a 64-character image ID, not a name; write the repository name instead",
            });
        }

        Ok(ImageRef {
            repository: Repository::new(&registry, path),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
            written_name: name.to_owned(),
        })
    }

    /// The reference as written, with the tag and digest replaced: the name part is kept
    /// letter for letter, so a registry alias or a short Docker Hub name survives a rewrite.
    pub fn with_tag(&self, tag: &str, digest: Option<&str>) -> String {
        let mut reference = format!("{}:{tag}", self.written_name);
        if let Some(digest) = digest {
            reference.push('@');
            reference.push_str(digest);
        }
        reference
    }
}

impl fmt::Display for ImageRef {
    /// Canonical form: `registry/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits the registry off a name when its first part looks like a host.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') => (Some(first), path),
        _ => (None, name),
    }
}

/// Checks `host[:port]` and returns it lowercased, with `index.docker.io` as `docker.io`.
pub(crate) fn normalize_registry(registry: &str) -> Result<String, &'static str> {
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or("has an IPv6 address without a closing ']'")?;
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err("has an invalid IPv6 address; write it as [::1]:5000");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("has text after the IPv6 address; only :port may follow it")?),
        };
        (&registry[..address.len() + 2], port)
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        if !host.split('.').all(is_domain_component) {
            return Err("is not a valid host name; use letters, digits, '-' and '.' only, such as harbor.local");
        }
        (host, port)
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err("has an invalid port; use a number from 0 to 65535");
    }

    let host = host.to_ascii_lowercase();
    let host = if host == "index.docker.io" { DOCKER_HUB.to_owned() } else { host };
    Ok(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Checks `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// Checks the path grammar: parts of `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`,
/// separated by `/`.
fn check_path(path: &str, reference: &str) -> Result<(), ReferenceError> {
    let invalid = |reason| ReferenceError::InvalidRepository { reference: reference.to_owned(), repository: path.to_owned(), reason };
    if path.is_empty() {
        return Err(invalid("is empty; write a repository after the registry"));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::UppercaseRepository { reference: reference.to_owned(), repository: path.to_owned() });
    }
    for component in path.split('/') {
        check_path_component(component).map_err(invalid)?;
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), &'static str> {
    const GRAMMAR: &str = "has an invalid part; each part between '/' is lowercase letters and digits joined by '.', '_', '__' or '-'";
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("has an empty part; remove the doubled, leading or trailing '/'");
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(GRAMMAR);
    }
    let is_alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(is_alphanumeric) || !bytes.last().is_some_and(is_alphanumeric) {
        return Err(GRAMMAR);
    }
    // Between two alphanumeric runs: exactly `.`, `_` or `__`, or any number of `-`.
    for separator in component.split(|c: char| c.is_ascii_alphanumeric()).filter(|s| !s.is_empty()) {
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(GRAMMAR);
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() {
        return Err("is empty; remove the ':' or write a tag after it");
    }
    if tag.len() > crate::scheme::MAX_TAG_LENGTH {
        return Err("is longer than 128 characters");
    }
    if !crate::scheme::is_valid_tag(tag) {
        return Err("has invalid characters; a tag is letters, digits, '_', '.' and '-', and does not start with '.' or '-'");
    }
    Ok(())
}

/// Checks a digest. Only the algorithms registered in the OCI image specification are
/// accepted, each with its exact length of lowercase hex.
fn check_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, encoded) = digest.split_once(':').ok_or("is malformed; write it as sha256:<64 lowercase hex digits>")?;
    let length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err("uses an unsupported algorithm; use sha256 or sha512"),
    };
    if encoded.len() != length || !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(if length == 64 {
            "is malformed; sha256 needs exactly 64 lowercase hex digits"
        } else {
            "is malformed; sha512 needs exactly 128 lowercase hex digits"
        });
    }
    Ok(())
}

/// Checks whether `digest` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.starts_with("sha256:") && check_digest(digest).is_ok()
}

fn is_image_id(path: &str) -> bool {
    path.len() == 64 && path.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
