//! Image references: parsing, Docker's normalization and canonical display.
//!
//! The grammar is the OCI distribution one, `[registry[:port]/]path[:tag][@digest]`:
//!
//! 1. The digest is everything after the first `@`.
//! 2. The tag is what follows a `:` in the last `/`-separated part, so the port of
//!    `harbor.local:5000/mojaloop/central-ledger` is never read as a tag.
//! 3. The first `/`-separated part is a registry when it contains `.` or `:`, is
//!    `localhost`, or is a bracketed IPv6 address. Otherwise the registry is `docker.io`.
//!    Docker also reads a first part with uppercase letters as a registry. Here it stays
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

/// The reason an image reference is invalid. Each variant names the part that is wrong.
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
        /// The problem and its fix.
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
        /// The problem and its fix.
        reason: &'static str,
    },
    /// The tag breaks the grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid image reference {reference:?}: tag {tag:?} {reason}")]
    InvalidTag {
        /// The reference as given.
        reference: String,
        /// The tag as written.
        tag: String,
        /// The problem and its fix.
        reason: &'static str,
    },
    /// The digest is malformed or uses an unsupported algorithm.
    #[error("invalid image reference {reference:?}: digest {digest:?} {reason}")]
    InvalidDigest {
        /// The reference as given.
        reference: String,
        /// The digest as written.
        digest: String,
        /// The problem and its fix.
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

    /// Returns the reference as written, with the tag and digest replaced: the name part is kept
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
pub(crate) fn split_registry(name: &str) -> (Option<&str>, &str) {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[rstest]
    #[case("mysql", "docker.io", "library/mysql", None, None, "docker.io/library/mysql")]
    #[case("mysql:8.0.1", "docker.io", "library/mysql", Some("8.0.1"), None, "docker.io/library/mysql:8.0.1")]
    #[case("library/mysql:8.0.1", "docker.io", "library/mysql", Some("8.0.1"), None, "docker.io/library/mysql:8.0.1")]
    #[case("docker.io/mysql:8.0.1", "docker.io", "library/mysql", Some("8.0.1"), None, "docker.io/library/mysql:8.0.1")]
    #[case("index.docker.io/mysql:8.0.1", "docker.io", "library/mysql", Some("8.0.1"), None, "docker.io/library/mysql:8.0.1")]
    #[case("INDEX.Docker.IO/mojaloop/x:v1", "docker.io", "mojaloop/x", Some("v1"), None, "docker.io/mojaloop/x:v1")]
    #[case("mojaloop/quoting-service:v10.4.0", "docker.io", "mojaloop/quoting-service", Some("v10.4.0"), None, "docker.io/mojaloop/quoting-service:v10.4.0")]
    #[case(
        "harbor.local:5000/mojaloop/central-ledger:v10.4.0",
        "harbor.local:5000",
        "mojaloop/central-ledger",
        Some("v10.4.0"),
        None,
        "harbor.local:5000/mojaloop/central-ledger:v10.4.0"
    )]
    #[case("harbor.local:5000/mojaloop/central-ledger", "harbor.local:5000", "mojaloop/central-ledger", None, None, "harbor.local:5000/mojaloop/central-ledger")]
    #[case("localhost/app:v1", "localhost", "app", Some("v1"), None, "localhost/app:v1")]
    #[case("localhost:5000/app", "localhost:5000", "app", None, None, "localhost:5000/app")]
    #[case("localhost:5000", "docker.io", "library/localhost", Some("5000"), None, "docker.io/library/localhost:5000")]
    #[case("[::1]:5000/app:v1", "[::1]:5000", "app", Some("v1"), None, "[::1]:5000/app:v1")]
    #[case("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000", "a/b/c", Some("v1"), None, "127.0.0.1:5000/a/b/c:v1")]
    #[case("mirror.gcr.io/mojaloop/x:v1", "mirror.gcr.io", "mojaloop/x", Some("v1"), None, "mirror.gcr.io/mojaloop/x:v1")]
    #[case("ghcr.io/mysql:8", "ghcr.io", "mysql", Some("8"), None, "ghcr.io/mysql:8")]
    #[case("a__b-c_d---e/f.g:_tag", "docker.io", "a__b-c_d---e/f.g", Some("_tag"), None, "docker.io/a__b-c_d---e/f.g:_tag")]
    fn parse_normalizes(
        #[case] reference: &str,
        #[case] registry: &str,
        #[case] path: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
        #[case] display: &str,
    ) {
        let image = ImageRef::parse(reference).expect("reference is valid");
        assert_eq!(image.repository.registry, registry);
        assert_eq!(image.repository.path, path);
        assert_eq!(image.tag.as_deref(), tag);
        assert_eq!(image.digest.as_deref(), digest);
        assert_eq!(image.to_string(), display);
    }

    #[test]
    fn parse_digest_only() {
        let image = ImageRef::parse(&format!("mojaloop/x@{DIGEST}")).expect("reference is valid");
        assert_eq!(image.tag, None);
        assert_eq!(image.digest.as_deref(), Some(DIGEST));
        assert_eq!(image.written_name, "mojaloop/x");
    }

    #[test]
    fn parse_tag_and_digest() {
        let image = ImageRef::parse(&format!("harbor.local:5000/mojaloop/x:v1@{DIGEST}")).expect("reference is valid");
        assert_eq!(image.repository.registry, "harbor.local:5000");
        assert_eq!(image.tag.as_deref(), Some("v1"));
        assert_eq!(image.digest.as_deref(), Some(DIGEST));
        assert_eq!(image.to_string(), format!("harbor.local:5000/mojaloop/x:v1@{DIGEST}"));
    }

    #[test]
    fn parse_sha512_digest() {
        let digest = format!("sha512:{}", "ab".repeat(64));
        let image = ImageRef::parse(&format!("x@{digest}")).expect("reference is valid");
        assert_eq!(image.digest, Some(digest));
    }

    #[rstest]
    #[case("", r#"invalid image reference "": it is empty; write a name such as mojaloop/quoting-service:v10.4.0"#)]
    #[case("Mojaloop/Quoting:v1", r#"invalid image reference "Mojaloop/Quoting:v1": repository "Mojaloop/Quoting" must be lowercase"#)]
    #[case("harbor.local/Mojaloop/x", r#"invalid image reference "harbor.local/Mojaloop/x": repository "Mojaloop/x" must be lowercase"#)]
    #[case(
        "x@sha256:abc",
        r#"invalid image reference "x@sha256:abc": digest "sha256:abc" is malformed; sha256 needs exactly 64 lowercase hex digits"#
    )]
    #[case("x:", r#"invalid image reference "x:": tag "" is empty; remove the ':' or write a tag after it"#)]
    fn parse_error_message(#[case] reference: &str, #[case] message: &str) {
        let error = ImageRef::parse(reference).expect_err("reference is invalid");
        assert_eq!(error.to_string(), message);
    }

    #[rstest]
    #[case::uppercase_digest(&format!("x@sha256:{}", "A".repeat(64)), "digest")]
    #[case::short_digest("x@sha256:0123", "digest")]
    #[case::long_digest(&format!("x@sha256:{}", "a".repeat(65)), "digest")]
    #[case::no_algorithm(&format!("x@{}", "a".repeat(64)), "digest")]
    #[case::unknown_algorithm(&format!("x@md5:{}", "a".repeat(32)), "digest")]
    #[case::empty_digest("x@", "digest")]
    #[case::second_at(&format!("x@{DIGEST}@{DIGEST}"), "digest")]
    #[case::tag_with_space("x:v 1", "tag")]
    #[case::tag_starting_with_dot("x:.v1", "tag")]
    #[case::tag_starting_with_dash("x:-v1", "tag")]
    #[case::tag_too_long(&format!("x:{}", "a".repeat(129)), "tag")]
    #[case::tag_non_ascii("x:v1.٠", "tag")]
    #[case::two_tags("x:v1:v2", "tag")]
    #[case::bad_host("bad_host.io/x", "registry")]
    #[case::host_dash("-bad.io/x", "registry")]
    #[case::bad_port("harbor.local:port/x", "registry")]
    #[case::big_port("harbor.local:70000/x", "registry")]
    #[case::empty_port("harbor.local:/x", "registry")]
    #[case::open_bracket("[::1/x", "registry")]
    #[case::empty_path("harbor.local/", "repository")]
    #[case::double_slash("a//b", "repository")]
    #[case::trailing_slash("a/", "repository")]
    #[case::leading_separator("_a/b", "repository")]
    #[case::triple_underscore("a___b", "repository")]
    #[case::dot_dash("a.-b", "repository")]
    #[case::space(" mysql", "repository")]
    #[case::newline("mysql\n", "repository")]
    #[case::non_ascii("mÿsql", "repository")]
    #[case::image_id(&"a".repeat(64), "repository")]
    #[case::name_too_long(&format!("a/{}", "b".repeat(254)), "characters long")]
    fn parse_error_names_part(#[case] reference: &str, #[case] part: &str) {
        let error = ImageRef::parse(reference).expect_err("reference is invalid").to_string();
        assert!(error.contains(part), "{error:?} does not name the {part}");
    }

    #[test]
    fn parse_accepts_255_character_name() {
        let name = format!("a/{}", "b".repeat(253));
        assert_eq!(name.len(), MAX_NAME_LENGTH);
        assert!(ImageRef::parse(&name).is_ok());
    }

    #[test]
    fn parse_accepts_128_character_tag() {
        let reference = format!("x:{}", "a".repeat(128));
        assert!(ImageRef::parse(&reference).is_ok());
    }

    #[rstest]
    #[case("mojaloop/quoting-service:v10.4.0", "mojaloop/quoting-service:v10.4.0.1-patch")]
    #[case("mirror.gcr.io/mojaloop/x:v10.4.0", "mirror.gcr.io/mojaloop/x:v10.4.0.1-patch")]
    #[case("harbor.local:5000/x:v10.4.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "harbor.local:5000/x:v10.4.0.1-patch")]
    #[case("Harbor.Local:5000/x:v10.4.0", "Harbor.Local:5000/x:v10.4.0.1-patch")]
    #[case("mysql", "mysql:v10.4.0.1-patch")]
    fn with_tag_keeps_written_name(#[case] reference: &str, #[case] expected: &str) {
        let image = ImageRef::parse(reference).expect("reference is valid");
        assert_eq!(image.with_tag("v10.4.0.1-patch", None), expected);
    }

    #[test]
    fn with_tag_adds_digest() {
        let image = ImageRef::parse("mojaloop/x:v10.4.0").expect("reference is valid");
        assert_eq!(image.with_tag("v10.4.0.1-patch", Some(DIGEST)), format!("mojaloop/x:v10.4.0.1-patch@{DIGEST}"));
    }

    #[rstest]
    #[case("mysql", "docker.io/library/mysql")]
    #[case("mirror.gcr.io/mojaloop/x", "mirror.gcr.io/mojaloop/x")]
    fn repository_parse_normalizes(#[case] name: &str, #[case] expected: &str) {
        assert_eq!(Repository::parse(name).map(|repository| repository.to_string()), Ok(expected.to_owned()));
    }

    #[test]
    fn repository_parse_rejects_tag() {
        assert_eq!(
            Repository::parse("mysql:8").map_err(|error| error.to_string()),
            Err(r#"invalid image name "mysql:8": remove the tag and digest, only the repository is expected here"#.to_owned())
        );
    }

    #[rstest]
    #[case(DIGEST, true)]
    #[case("sha256:0123", false)]
    #[case("sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false)]
    fn sha256_digest_check(#[case] digest: &str, #[case] expected: bool) {
        assert_eq!(is_sha256_digest(digest), expected);
    }

    fn references() -> impl Strategy<Value = String> {
        // No '.' in path parts: a first part with a dot would be read as a registry.
        let component = "[a-z0-9]{1,5}([_-][a-z0-9]{1,5}|__[a-z0-9]{1,5}){0,2}";
        let registry = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_owned()),
            Just("index.docker.io/".to_owned()),
            Just("localhost/".to_owned()),
            "[a-z]{1,8}\\.[a-z]{2,4}(:[1-9][0-9]{0,3})?/",
        ];
        let path = proptest::collection::vec(component, 1..4).prop_map(|parts| parts.join("/"));
        let tag = proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
        let digest = proptest::option::of("[0-9a-f]{64}");
        (registry, path, tag, digest).prop_map(|(registry, path, tag, digest)| {
            let mut reference = format!("{registry}{path}");
            if let Some(tag) = tag {
                reference = format!("{reference}:{tag}");
            }
            if let Some(digest) = digest {
                reference = format!("{reference}@sha256:{digest}");
            }
            reference
        })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(reference in references()) {
            let image = ImageRef::parse(&reference).expect("generated reference is valid");
            let canonical = image.to_string();
            let reparsed = ImageRef::parse(&canonical).expect("canonical reference is valid");
            prop_assert_eq!(&reparsed.repository, &image.repository);
            prop_assert_eq!(&reparsed.tag, &image.tag);
            prop_assert_eq!(&reparsed.digest, &image.digest);
            prop_assert_eq!(&reparsed.written_name, &image.repository.to_string());
            prop_assert_eq!(reparsed.to_string(), canonical);
        }

        #[test]
        fn parse_never_panics(reference in "\\PC{0,300}") {
            let _ = ImageRef::parse(&reference);
        }
    }
}
