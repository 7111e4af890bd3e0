//! Policy globs over normalized repositories.
//!
//! A policy's `image` is normalized like an image name before it is compiled, so
//! `mojaloop/*` becomes `docker.io/mojaloop/*` and `mysql` becomes
//! `docker.io/library/mysql`. In the result, `*` matches any run of characters inside
//! one `/`-separated part and `**` matches across parts: `docker.io/mojaloop/*` matches
//! `docker.io/mojaloop/quoting-service` but not `docker.io/mojaloop/tools/curl`, which
//! `docker.io/mojaloop/**` matches. The registry part is matched on its own, so a policy
//! for another registry names that registry (`harbor.local:5000/**`, `*.example.org/**`).

use std::collections::BTreeMap;

use regex::Regex;

use crate::reference::{DOCKER_HUB, Repository, normalize_registry, split_registry};

/// A compiled policy glob.
#[derive(Debug, Clone)]
pub(super) struct Glob {
    /// The normalized pattern, `registry/path`.
    pub(super) pattern: String,
    registry: Regex,
    path: Regex,
}

impl Glob {
    /// Normalizes and compiles `image`; a registry alias in it is replaced by its source.
    pub(super) fn new(image: &str, aliases: &BTreeMap<String, String>) -> Result<Glob, String> {
        if image.contains('@') || image.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(format!("image {image:?} has a tag or digest; a policy names repositories only, such as mojaloop/*"));
        }

        let (registry, path) = split_registry(image);
        let registry = registry.unwrap_or(DOCKER_HUB);
        let registry = if registry.contains('*') {
            check_glob_chars(registry, |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
                .map_err(|()| format!("image {image:?} has an invalid registry {registry:?}; use a host name such as harbor.local:5000"))?;
            registry.to_ascii_lowercase()
        } else {
            let registry = normalize_registry(registry).map_err(|reason| format!("image {image:?}: registry {registry:?} {reason}"))?;
            aliases.get(&registry).cloned().unwrap_or(registry)
        };

        if path.is_empty() || path.split('/').any(str::is_empty) {
            return Err(format!("image {image:?} has an empty path part; remove the doubled, leading or trailing '/'"));
        }
        check_glob_chars(path, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')).map_err(|()| {
            format!("image {image:?} has an invalid path; use lowercase letters, digits, '.', '_', '-', '/' and the wildcards * and **")
        })?;
        let path = if registry == DOCKER_HUB && !path.contains('/') && path != "**" { format!("library/{path}") } else { path.to_owned() };

        Ok(Glob { pattern: format!("{registry}/{path}"), registry: compile(&registry)?, path: compile(&path)? })
    }

    /// Checks whether the glob matches `repository`.
    pub(super) fn matches(&self, repository: &Repository) -> bool {
        self.registry.is_match(&repository.registry) && self.path.is_match(&repository.path)
    }
}

/// Checks that every character is a wildcard or allowed by `allowed`.
fn check_glob_chars(text: &str, allowed: impl Fn(u8) -> bool) -> Result<(), ()> {
    if text.bytes().all(|b| b == b'*' || allowed(b)) { Ok(()) } else { Err(()) }
}

/// Translates a glob into an anchored regex: `**` to `.*`, `*` to `[^/]*`.
fn compile(glob: &str) -> Result<Regex, String> {
    let mut regex = String::from("^");
    let mut rest = glob;
    while let Some(star) = rest.find('*') {
        regex.push_str(&regex::escape(&rest[..star]));
        if rest[star..].starts_with("**") {
            regex.push_str(".*");
            rest = &rest[star + 2..];
        } else {
            regex.push_str("[^/]*");
            rest = &rest[star + 1..];
        }
    }
    regex.push_str(&regex::escape(rest));
    regex.push('$');
    Regex::new(&regex).map_err(|error| format!("glob {glob:?} cannot be compiled: {error}"))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn aliases() -> BTreeMap<String, String> {
        BTreeMap::from([("mirror.gcr.io".to_owned(), "docker.io".to_owned())])
    }

    #[rstest]
    #[case("mojaloop/*", "docker.io/mojaloop/*")]
    #[case("mysql", "docker.io/library/mysql")]
    #[case("*", "docker.io/library/*")]
    #[case("**", "docker.io/**")]
    #[case("docker.io/mojaloop/**", "docker.io/mojaloop/**")]
    #[case("index.docker.io/mojaloop/*", "docker.io/mojaloop/*")]
    #[case("mirror.gcr.io/mojaloop/*", "docker.io/mojaloop/*")]
    #[case("Harbor.Local:5000/team/*", "harbor.local:5000/team/*")]
    #[case("*.example.org/team/*", "*.example.org/team/*")]
    fn glob_normalizes(#[case] image: &str, #[case] expected: &str) {
        assert_eq!(Glob::new(image, &aliases()).map(|glob| glob.pattern), Ok(expected.to_owned()));
    }

    #[rstest]
    #[case("mojaloop/*", "docker.io", "mojaloop/quoting-service", true)]
    #[case("mojaloop/*", "docker.io", "mojaloop/tools/curl", false)]
    #[case("mojaloop/**", "docker.io", "mojaloop/tools/curl", true)]
    #[case("mojaloop/*", "harbor.local", "mojaloop/quoting-service", false)]
    #[case("mojaloop/*", "docker.io", "mojaloopx/quoting-service", false)]
    #[case("mojaloop/central-*", "docker.io", "mojaloop/central-ledger", true)]
    #[case("mojaloop/central-*", "docker.io", "mojaloop/quoting-service", false)]
    #[case("mysql", "docker.io", "library/mysql", true)]
    #[case("mysql", "docker.io", "library/mysql-router", false)]
    #[case("*.example.org/team/*", "registry.example.org", "team/app", true)]
    #[case("*.example.org/team/*", "registry.example.com", "team/app", false)]
    #[case("registry.example.org/team/*", "registry.example.org", "team/app", true)]
    #[case("a.b/x.y", "a.b", "xzy", false)]
    fn glob_matches(#[case] image: &str, #[case] registry: &str, #[case] path: &str, #[case] expected: bool) {
        let glob = Glob::new(image, &aliases()).expect("glob is valid");
        let repository = Repository { registry: registry.to_owned(), path: path.to_owned() };
        assert_eq!(glob.matches(&repository), expected);
    }

    #[rstest]
    #[case("mojaloop/*:v1", "tag or digest")]
    #[case("mojaloop/x@sha256:abc", "tag or digest")]
    #[case("Mojaloop/*", "invalid path")]
    #[case("mojaloop//x", "empty path part")]
    #[case("harbor.local/", "empty path part")]
    #[case("bad_host.io/x", "registry")]
    #[case("*_x.io/x", "invalid registry")]
    #[case("mojaloop/[a-z]", "invalid path")]
    fn glob_rejects(#[case] image: &str, #[case] part: &str) {
        let error = Glob::new(image, &aliases()).expect_err("glob is invalid");
        assert!(error.contains(part), "{error:?} does not mention {part:?}");
    }
}
