//! Versioning schemes: how a tag splits into a release line and a patch level.
//!
//! A scheme reads one tag at a time and either returns its [`TagVersion`] or says that
//! the tag is outside the scheme. Only canonical spellings are inside: numbers have no
//! leading zeros and fit in a `u64`, digits are ASCII, a patch keeps its line's `v`
//! prefix, and nothing follows the parts the scheme names. Every tag therefore has at
//! most one reading, so picking the newest patch never depends on the order in which a
//! registry lists its tags or on which of two equivalent spellings it lists.
//!
//! | scheme           | line            | level 0    | level 3                |
//! |------------------|-----------------|------------|------------------------|
//! | `patch-suffix`   | `v10.4.0`       | `v10.4.0`  | `v10.4.0.3-patch`      |
//! | `semver-patch`   | `v10.4`         | `v10.4.0`  | `v10.4.3`              |
//! | `suffix-counter` | `v9.3.0`        | `v9.3.0`   | `v9.3.0-hotfix.3`      |
//! | `regex`          | group `line`    | no `level` | group `level` = `3`    |

use std::cmp::Ordering;

/// Maximum length of an OCI tag, in characters.
pub const MAX_TAG_LENGTH: usize = 128;

/// Maximum length of an operator's `regex` pattern, in bytes.
pub const MAX_PATTERN_LENGTH: usize = 1024;

/// Maximum compiled size of an operator's `regex` pattern, in bytes. Tag patterns need a
/// few kilobytes at most; the limit rejects patterns such as `(a{1000}){1000}` early.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A tag split by a scheme. Two tags are patches of each other when their lines are equal.
///
/// The order is by line (as text), then by level (as a number), so tags of one line sort
/// by level: `v10.4.0.9-patch` before `v10.4.0.10-patch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagVersion {
    /// The release line, spelled as in the tag (`v10.4.0` for `patch-suffix`, `v10.4` for `semver-patch`).
    pub line: String,
    /// The patch level; 0 for the base version of a line.
    pub level: u64,
}

/// How a repository's tags say "same functionality, newer security fixes".
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `v10.4.0` (level 0), `v10.4.0.1-patch` (level 1), …; the default.
    PatchSuffix,
    /// `v10.4.0`: line `v10.4`, level 0.
    SemverPatch,
    /// `v9.3.0` (level 0), `v9.3.0-hotfix.2` (level 2) with the word `hotfix`.
    SuffixCounter {
        /// The suffix word that is counted.
        word: String,
    },
    /// An operator's pattern with named groups `line` and `level`, matched against the whole tag.
    ///
    /// Build it with [`Scheme::regex`], which anchors the pattern and checks its groups.
    /// A regex built elsewhere still only accepts a match that spans the whole tag.
    Regex(regex::Regex),
}

/// Why a scheme cannot be built from an operator's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The scheme name is none of the built-in ones.
    #[error("unknown scheme {name:?}: use patch-suffix, semver-patch, suffix-counter or regex")]
    UnknownName {
        /// The name as written.
        name: String,
    },
    /// The `suffix-counter` word is missing or not a plain word.
    #[error("invalid suffix {word:?}: use a word of ASCII letters and digits that starts with a letter, such as hotfix")]
    InvalidSuffix {
        /// The word as written.
        word: String,
    },
    /// The `regex` pattern does not compile or is too large.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// The `regex` pattern has no named group `line`.
    #[error("invalid pattern {pattern:?}: it needs a named group (?P<line>...) for the release line")]
    MissingLineGroup {
        /// The pattern as written.
        pattern: String,
    },
}

impl Scheme {
    /// Builds the `suffix-counter` scheme that counts `word` (`hotfix` reads `v9.3.0-hotfix.2`).
    pub fn suffix_counter(word: &str) -> Result<Scheme, SchemeError> {
        let mut chars = word.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !starts_with_letter || !chars.all(|c| c.is_ascii_alphanumeric()) {
            return Err(SchemeError::InvalidSuffix { word: word.to_owned() });
        }
        Ok(Scheme::SuffixCounter { word: word.to_owned() })
    }

    /// Compiles an operator's pattern into the `regex` scheme.
    ///
    /// The pattern is anchored at both ends, so it always matches the whole tag, and it
    /// must have a named group `line`. A `level` group is optional: a tag whose match
    /// leaves it unset is level 0.
    pub fn regex(pattern: &str) -> Result<Scheme, SchemeError> {
        let invalid = |reason: String| SchemeError::InvalidPattern { pattern: pattern.to_owned(), reason };
        if pattern.len() > MAX_PATTERN_LENGTH {
            return Err(invalid(format!("it is {} bytes long, the maximum is {MAX_PATTERN_LENGTH}", pattern.len())));
        }

        // Compile the pattern alone first: only a pattern that is complete on its own can
        // be wrapped safely, because `a)|(b` would otherwise escape the anchors.
        let build = |text: &str| regex::RegexBuilder::new(text).size_limit(REGEX_SIZE_LIMIT).build();
        build(pattern).map_err(|error| invalid(error.to_string()))?;
        let anchored = build(&format!("^(?:{pattern})$")).map_err(|error| invalid(error.to_string()))?;

        if !anchored.capture_names().any(|name| name == Some("line")) {
            return Err(SchemeError::MissingLineGroup { pattern: pattern.to_owned() });
        }
        Ok(Scheme::Regex(anchored))
    }

    /// Builds a scheme from its name in the approvals document and the settings it needs:
    /// `suffix` for `suffix-counter`, `pattern` for `regex`.
    pub fn from_settings(name: &str, suffix: Option<&str>, pattern: Option<&str>) -> Result<Scheme, SchemeError> {
        match name {
            "patch-suffix" => Ok(Scheme::PatchSuffix),
            "semver-patch" => Ok(Scheme::SemverPatch),
            "suffix-counter" => Scheme::suffix_counter(suffix.unwrap_or_default()),
            "regex" => Scheme::regex(pattern.unwrap_or_default()),
            _ => Err(SchemeError::UnknownName { name: name.to_owned() }),
        }
    }

    /// Splits `tag` into release line and patch level, or `None` when the tag is outside the scheme.
    pub fn parse(&self, tag: &str) -> Option<TagVersion> {
        if !is_valid_tag(tag) {
            return None;
        }
        match self {
            Scheme::PatchSuffix => parse_patch_suffix(tag),
            Scheme::SemverPatch => parse_semver_patch(tag),
            Scheme::SuffixCounter { word } => parse_suffix_counter(tag, word),
            Scheme::Regex(regex) => parse_regex(tag, regex),
        }
    }

    /// Compares two tags of one release line by patch level. `None` when either tag is
    /// outside the scheme or the two are in different lines.
    pub fn compare(&self, left: &str, right: &str) -> Option<Ordering> {
        let left = self.parse(left)?;
        let right = self.parse(right)?;
        (left.line == right.line).then(|| left.level.cmp(&right.level))
    }

    /// Returns the tags of `tags` that are newer patches of `running`'s line, ordered by
    /// level, lowest first. Empty when `running` is outside the scheme.
    ///
    /// The input order does not matter. A tag listed twice appears once, and tags that a
    /// `regex` scheme reads as the same level are ordered by their text, so the last one
    /// is the same whatever order the registry listed them in.
    pub fn newer_patches<'a>(&self, running: &str, tags: impl IntoIterator<Item = &'a str>) -> Vec<(&'a str, TagVersion)> {
        let Some(running) = self.parse(running) else {
            return Vec::new();
        };
        let mut newer: Vec<(&'a str, TagVersion)> = tags
            .into_iter()
            .filter_map(|tag| self.parse(tag).map(|version| (tag, version)))
            .filter(|(_, version)| version.line == running.line && version.level > running.level)
            .collect();
        newer.sort_by(|(left_tag, left), (right_tag, right)| left.level.cmp(&right.level).then_with(|| left_tag.cmp(right_tag)));
        newer.dedup_by(|(left_tag, _), (right_tag, _)| left_tag == right_tag);
        newer
    }

    /// Returns the newest patch of `running`'s line among `tags`, if one is newer than `running`.
    pub fn newest_patch<'a>(&self, running: &str, tags: impl IntoIterator<Item = &'a str>) -> Option<(&'a str, TagVersion)> {
        self.newer_patches(running, tags).pop()
    }

    /// The scheme's name as written in the approvals document (`patch-suffix`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::PatchSuffix => "patch-suffix",
            Scheme::SemverPatch => "semver-patch",
            Scheme::SuffixCounter { .. } => "suffix-counter",
            Scheme::Regex(_) => "regex",
        }
    }
}

/// Checks the OCI tag grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= MAX_TAG_LENGTH
        && (first.is_ascii_alphanumeric() || *first == b'_')
        && rest.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reads a canonical patch level: ASCII digits, no leading zero, at most `u64::MAX`.
pub fn parse_level(text: &str) -> Option<u64> {
    if !is_canonical_number(text) {
        return None;
    }
    text.parse().ok()
}

/// Checks for ASCII digits without a leading zero (`0` itself is canonical).
fn is_canonical_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) && (bytes[0] != b'0' || bytes.len() == 1)
}

/// Splits a base version `v?N(.N){numbers-1}` off the front of `tag` and returns it with
/// the rest of the tag. Each number must be canonical; their size is not limited because
/// they are only compared as text.
fn split_base(tag: &str, numbers: usize) -> Option<(&str, &str)> {
    let bytes = tag.as_bytes();
    let mut position = usize::from(bytes.first() == Some(&b'v'));
    for index in 0..numbers {
        if index > 0 {
            if bytes.get(position) != Some(&b'.') {
                return None;
            }
            position += 1;
        }
        let digits = bytes[position..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !is_canonical_number(&tag[position..position + digits]) {
            return None;
        }
        position += digits;
    }
    Some(tag.split_at(position))
}

/// Reads a level of at least 1; level 0 is spelled as the plain base version only.
fn parse_positive_level(text: &str) -> Option<u64> {
    parse_level(text).filter(|level| *level > 0)
}

fn parse_patch_suffix(tag: &str) -> Option<TagVersion> {
    let (line, rest) = split_base(tag, 3)?;
    let level = if rest.is_empty() {
        0
    } else {
        let counter = rest.strip_prefix('.')?.strip_suffix("-patch")?;
        parse_positive_level(counter)?
    };
    Some(TagVersion { line: line.to_owned(), level })
}

fn parse_semver_patch(tag: &str) -> Option<TagVersion> {
    let (line, rest) = split_base(tag, 2)?;
    let level = parse_level(rest.strip_prefix('.')?)?;
    Some(TagVersion { line: line.to_owned(), level })
}

fn parse_suffix_counter(tag: &str, word: &str) -> Option<TagVersion> {
    let (line, rest) = split_base(tag, 3)?;
    let level = if rest.is_empty() {
        0
    } else {
        let counter = rest.strip_prefix('-')?.strip_prefix(word)?.strip_prefix('.')?;
        parse_positive_level(counter)?
    };
    Some(TagVersion { line: line.to_owned(), level })
}

fn parse_regex(tag: &str, regex: &regex::Regex) -> Option<TagVersion> {
    let captures = regex.captures(tag)?;
    let whole = captures.get(0)?;
    if whole.start() != 0 || whole.end() != tag.len() {
        return None;
    }
    let line = captures.name("line")?.as_str();
    if line.is_empty() {
        return None;
    }
    let level = match captures.name("level") {
        Some(level) => parse_level(level.as_str())?,
        None => 0,
    };
    Some(TagVersion { line: line.to_owned(), level })
}
