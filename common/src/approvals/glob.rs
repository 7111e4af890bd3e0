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

use crate::reference::{DOCKER_HUB, Repository, normalize_registry};

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

        let (registry, path) = match image.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') => (first, path),
            _ => (DOCKER_HUB, image),
        };
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
