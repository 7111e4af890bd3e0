//! Reading and checking an approvals document, section by section.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::document::{ApprovalEntry, PolicyEntry};
use super::glob::Glob;
use super::positions::{self, Positions};
use super::{Approval, Approvals, DocumentError, EntryError, NOT_A_MAPPING, Policy};
use crate::reference::{ImageRef, is_sha256_digest, normalize_registry};
use crate::scheme::Scheme;

/// Maximum length of a namespace name, as Kubernetes enforces it (an RFC 1123 label).
const MAX_NAMESPACE_LENGTH: usize = 63;

pub(super) fn parse(document: &str) -> Result<(Approvals, Vec<EntryError>), DocumentError> {
    let root: Value = serde_yaml_ng::from_str(document).map_err(DocumentError::from_yaml)?;
    let sections = match root {
        Value::Null => return Ok((Approvals::empty(), Vec::new())),
        Value::Mapping(sections) => sections,
        _ => return Err(DocumentError { message: NOT_A_MAPPING.to_owned() }),
    };

    let mut approval_values = Vec::new();
    let mut policy_values = Vec::new();
    let mut registry_values = Mapping::new();
    for (key, value) in sections {
        match key.as_str() {
            Some("approvals") => approval_values = into_list("approvals", value)?,
            Some("policies") => policy_values = into_list("policies", value)?,
            Some("registries") => {
                registry_values = match value {
                    Value::Null => Mapping::new(),
                    Value::Mapping(registries) => registries,
                    _ => {
                        let message = "registries must be a mapping of alias to source registry, such as mirror.gcr.io: docker.io";
                        return Err(DocumentError { message: message.to_owned() });
                    }
                }
            }
            _ => {
                let key = describe_key(&key);
                let message = format!("unknown top-level key {key}; the keys are approvals, policies and registries");
                return Err(DocumentError { message });
            }
        }
    }

    let positions = positions::find(document);
    let mut approvals = Approvals::empty();
    let mut errors = Vec::new();
    read_registries(&mut approvals, registry_values, &positions, &mut errors);
    read_policies(&mut approvals, policy_values, &positions, &mut errors);
    read_approvals(&mut approvals, approval_values, &positions, &mut errors);
    Ok((approvals, errors))
}

fn into_list(section: &str, value: Value) -> Result<Vec<Value>, DocumentError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(entries) => Ok(entries),
        _ => Err(DocumentError { message: format!("{section} must be a list of entries, each starting with '- image:'") }),
    }
}

fn describe_key(key: &Value) -> String {
    match key.as_str() {
        Some(key) => format!("{key:?}"),
        None => "that is not a string".to_owned(),
    }
}

/// Builds the error of entry `index` of `section`.
fn entry_error(section: &'static str, index: usize, positions: &Positions, message: String) -> EntryError {
    EntryError { section, index, line: positions.line(section, index), message }
}

fn read_registries(approvals: &mut Approvals, values: Mapping, positions: &Positions, errors: &mut Vec<EntryError>) {
    // Alias to the index of the entry that maps it, to name both sides of a conflict.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted = Vec::new();
    for (index, (key, value)) in values.into_iter().enumerate() {
        match check_registry(&key, &value, &seen, positions) {
            Ok((alias, source)) => {
                seen.insert(alias.clone(), index);
                accepted.push((index, alias, source));
            }
            Err(message) => errors.push(entry_error("registries", index, positions, message)),
        }
    }

    // Aliases are resolved in one step, so a source must not be an alias itself.
    for (index, alias, source) in accepted {
        if let Some(&other) = seen.get(&source) {
            let message = format!(
                "source {source:?} of alias {alias:?} is itself an alias (registries[{other}], line {}); map {alias:?} to the final source registry",
                positions.line("registries", other),
            );
            errors.push(entry_error("registries", index, positions, message));
            continue;
        }
        approvals.aliases.insert(alias, source);
    }
}

fn check_registry(key: &Value, value: &Value, seen: &BTreeMap<String, usize>, positions: &Positions) -> Result<(String, String), String> {
    let (Some(alias), Some(source)) = (key.as_str(), value.as_str()) else {
        return Err("an alias and its source must both be registry host names, such as mirror.gcr.io: docker.io".to_owned());
    };
    let alias = normalize_registry(alias).map_err(|reason| format!("alias {alias:?} {reason}"))?;
    let source = normalize_registry(source).map_err(|reason| format!("source {source:?} {reason}"))?;
    if alias == source {
        return Err(format!("alias {alias:?} names itself as its source; remove the entry"));
    }
    if let Some(&earlier) = seen.get(&alias) {
        return Err(format!(
            "alias {alias:?} conflicts with registries[{earlier}] (line {}), which maps the same registry; keep one of the two",
            positions.line("registries", earlier),
        ));
    }
    Ok((alias, source))
}

fn read_policies(approvals: &mut Approvals, values: Vec<Value>, positions: &Positions, errors: &mut Vec<EntryError>) {
    for (index, value) in values.into_iter().enumerate() {
        match check_policy(approvals, index, value, positions) {
            Ok((policy, glob)) => {
                approvals.policies.push(policy);
                approvals.globs.push(glob);
            }
            Err(message) => errors.push(entry_error("policies", index, positions, message)),
        }
    }
}

fn check_policy(approvals: &Approvals, index: usize, value: Value, positions: &Positions) -> Result<(Policy, Glob), String> {
    let entry: PolicyEntry = serde_yaml_ng::from_value(value).map_err(describe_shape_error)?;
    let glob = Glob::new(&entry.image, &approvals.aliases)?;

    let name = entry.scheme.as_deref().unwrap_or("patch-suffix");
    match (name, &entry.suffix, &entry.pattern) {
        ("suffix-counter", None, _) => return Err("the suffix-counter scheme needs the word it counts, such as suffix: hotfix".to_owned()),
        ("regex", _, None) => {
            return Err("the regex scheme needs a pattern with a named group line, such as pattern: '^v(?P<line>\\d+\\.\\d+\\.\\d+)-p(?P<level>\\d+)$'".to_owned());
        }
        (name, Some(_), _) if name != "suffix-counter" => {
            return Err(format!("suffix is only read by the suffix-counter scheme, not {name}; remove it or set scheme: suffix-counter"));
        }
        (name, _, Some(_)) if name != "regex" => {
            return Err(format!("pattern is only read by the regex scheme, not {name}; remove it or set scheme: regex"));
        }
        _ => {}
    }
    let scheme = Scheme::from_settings(name, entry.suffix.as_deref(), entry.pattern.as_deref()).map_err(|error| error.to_string())?;

    if let Some(earlier) = approvals.policies.iter().find(|policy| policy.pattern == glob.pattern) {
        return Err(format!(
            "image {:?} conflicts with policies[{}] (line {}), which has the same glob {:?} and always matches first; remove one of the two",
            entry.image,
            earlier.index,
            positions.line("policies", earlier.index),
            glob.pattern,
        ));
    }

    let policy = Policy { index, pattern: glob.pattern.clone(), scheme, mode: entry.mode.unwrap_or_default() };
    Ok((policy, glob))
}

/// Describes an entry that does not fit its type, with a hint for the usual cause of a
/// type error: YAML reads an unquoted `8.0` as a number, not a tag.
fn describe_shape_error(error: serde_yaml_ng::Error) -> String {
    let message = error.to_string();
    if message.starts_with("invalid type") {
        format!("{message}; quote tags and names that YAML would read as numbers or booleans, such as version: \"8.0\"")
    } else {
        message
    }
}

fn read_approvals(approvals: &mut Approvals, values: Vec<Value>, positions: &Positions, errors: &mut Vec<EntryError>) {
    for (index, value) in values.into_iter().enumerate() {
        match check_approval(approvals, index, value, positions) {
            Ok(approval) => {
                let position = approvals.approvals.len();
                let lines = approvals.index.entry(approval.repository.clone()).or_default();
                lines.entry(approval.patch_version.line.clone()).or_default().push(position);
                approvals.approvals.push(approval);
            }
            Err(message) => errors.push(entry_error("approvals", index, positions, message)),
        }
    }
}

fn check_approval(approvals: &Approvals, index: usize, value: Value, positions: &Positions) -> Result<Approval, String> {
    let entry: ApprovalEntry = serde_yaml_ng::from_value(value).map_err(describe_shape_error)?;

    let image = ImageRef::parse(&entry.image).map_err(|error| error.to_string())?;
    if image.tag.is_some() || image.digest.is_some() {
        return Err(format!("image {:?} has a tag or digest; write the repository only and put the tags in version and patch", entry.image));
    }
    let repository = approvals.source_repository(&image);

    let scheme = approvals.scheme_for(&repository);
    let outside = |field: &str, tag: &str| {
        format!("{field} {tag:?} is outside the {} scheme of {repository}; write a tag of that scheme or add a policy for the repository", scheme.name())
    };
    let version = scheme.parse(&entry.version).ok_or_else(|| outside("version", &entry.version))?;
    let patch = scheme.parse(&entry.patch).ok_or_else(|| outside("patch", &entry.patch))?;
    if patch.line != version.line {
        return Err(format!(
            "patch {:?} is in release line {:?}, but version {:?} is in release line {:?}; a patch must stay in its version's line",
            entry.patch, patch.line, entry.version, version.line,
        ));
    }
    if patch.level <= version.level {
        return Err(format!(
            "patch {:?} (level {}) is not newer than version {:?} (level {}); approve a higher patch level",
            entry.patch, patch.level, entry.version, version.level,
        ));
    }

    if let Some(digest) = &entry.digest
        && !is_sha256_digest(digest)
    {
        return Err(format!("digest {digest:?} is invalid; write sha256: followed by 64 lowercase hex digits"));
    }

    let namespaces = match entry.namespaces {
        Some(namespaces) => Some(check_namespaces(namespaces)?),
        None => None,
    };

    let existing = approvals.index.get(&repository).and_then(|lines| lines.get(&patch.line));
    for earlier in existing.into_iter().flatten().filter_map(|&position| approvals.approvals.get(position)) {
        if let Some(scope) = shared_scope(earlier.namespaces.as_deref(), namespaces.as_deref()) {
            return Err(format!(
                "conflicts with approvals[{}] (line {}): both approve release line {:?} of {repository} {scope}; remove one or give them different namespaces",
                earlier.index, earlier.line, patch.line,
            ));
        }
    }

    Ok(Approval {
        index,
        line: positions.line("approvals", index),
        repository,
        version: entry.version,
        patch: entry.patch,
        patch_version: patch,
        digest: entry.digest,
        namespaces,
        approved_by: entry.approved_by,
        note: entry.note,
    })
}

/// Checks namespace names and drops repeated ones.
fn check_namespaces(namespaces: Vec<String>) -> Result<Vec<String>, String> {
    if namespaces.is_empty() {
        return Err("namespaces is empty, so the approval would apply nowhere; list namespaces or remove the key".to_owned());
    }
    let mut checked: Vec<String> = Vec::with_capacity(namespaces.len());
    for namespace in namespaces {
        if !is_namespace_name(&namespace) {
            return Err(format!(
                "namespace {namespace:?} is not a valid namespace name; use lowercase letters, digits and '-', at most {MAX_NAMESPACE_LENGTH} characters"
            ));
        }
        if !checked.contains(&namespace) {
            checked.push(namespace);
        }
    }
    Ok(checked)
}

/// Checks an RFC 1123 label: lowercase letters, digits and `-`, alphanumeric at both ends.
fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let is_alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAMESPACE_LENGTH
        && bytes.iter().all(|b| is_alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(is_alphanumeric)
        && bytes.last().is_some_and(is_alphanumeric)
}

/// Describes where two namespace scopes overlap, or `None` when they do not.
fn shared_scope(left: Option<&[String]>, right: Option<&[String]>) -> Option<String> {
    let shared: Vec<&str> = match (left, right) {
        (None, None) => return Some("in every namespace".to_owned()),
        (None, Some(names)) | (Some(names), None) => names.iter().map(String::as_str).collect(),
        (Some(left), Some(right)) => left.iter().filter(|name| right.contains(name)).map(String::as_str).collect(),
    };
    match shared.as_slice() {
        [] => None,
        [name] => Some(format!("in namespace {name}")),
        names => Some(format!("in namespaces {}", names.join(", "))),
    }
}
