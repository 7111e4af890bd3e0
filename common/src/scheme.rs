//! Versioning schemes: how a tag splits into a release line and a patch level.
//!
//! A scheme reads one tag at a time and returns its [`TagVersion`], or `None` when the
//! tag is outside the scheme. Only canonical spellings are inside: numbers have no
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

/// The rule by which a repository's tags mark "same functionality, newer security fixes".
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

/// Error from building a scheme out of an operator's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The scheme name is not a built-in one.
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

    /// Returns the scheme's name as written in the approvals document (`patch-suffix`, …).
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    fn version(line: &str, level: u64) -> Option<TagVersion> {
        Some(TagVersion { line: line.to_owned(), level })
    }

    fn hotfix() -> Scheme {
        Scheme::suffix_counter("hotfix").expect("hotfix is a valid word")
    }

    fn design_regex() -> Scheme {
        Scheme::regex(r"^v(?P<line>\d+\.\d+\.\d+)(?:-p(?P<level>\d+))?$").expect("pattern compiles")
    }

    #[rstest]
    #[case("v10.4.0", version("v10.4.0", 0))]
    #[case("v10.4.0.1-patch", version("v10.4.0", 1))]
    #[case("v10.4.0.10-patch", version("v10.4.0", 10))]
    #[case("10.4.0", version("10.4.0", 0))]
    #[case("10.4.0.1-patch", version("10.4.0", 1))]
    #[case("v0.0.0", version("v0.0.0", 0))]
    #[case("v10.4.0.18446744073709551615-patch", version("v10.4.0", u64::MAX))]
    #[case("v10.4.0.18446744073709551616-patch", None)]
    #[case("v10.4.0.0-patch", None)]
    #[case("v10.4.0.01-patch", None)]
    #[case("v010.4.0", None)]
    #[case("v10.04.0", None)]
    #[case("v10.4.00", None)]
    #[case("v10.4.0-patch", None)]
    #[case("v10.4.0.1-patch.1", None)]
    #[case("v10.4.0.1-patch-fips", None)]
    #[case("v10.4.0.1-PATCH", None)]
    #[case("v10.4.0.160-snapshot.7", None)]
    #[case("v10.4.0.2-pisp", None)]
    #[case("v10.3.1.2-pisp", None)]
    #[case("v15.0.0-snapshot.3", None)]
    #[case("v9.3.0-hotfix.2", None)]
    #[case("v11.0.0-rc.1", None)]
    #[case("V10.4.0", None)]
    #[case("vv10.4.0", None)]
    #[case("v10.4", None)]
    #[case("v10.4.0.", None)]
    #[case("v10.4.0.1", None)]
    #[case("20240101", None)]
    #[case("latest", None)]
    #[case("", None)]
    #[case(" v10.4.0", None)]
    #[case("v10.4.0 ", None)]
    #[case("v10.4.0\n", None)]
    #[case("v١٠.4.0", None)]
    #[case("v10.4.0.١-patch", None)]
    #[case("v+10.4.0", None)]
    #[case("v10.4.0.+1-patch", None)]
    fn patch_suffix_parses(#[case] tag: &str, #[case] expected: Option<TagVersion>) {
        assert_eq!(Scheme::PatchSuffix.parse(tag), expected);
    }

    #[rstest]
    #[case("v10.4.0", version("v10.4", 0))]
    #[case("v10.4.1", version("v10.4", 1))]
    #[case("8.0.36", version("8.0", 36))]
    #[case("8.0.18446744073709551615", version("8.0", u64::MAX))]
    #[case("8.0.18446744073709551616", None)]
    #[case("8.0.01", None)]
    #[case("8.00.1", None)]
    #[case("8.0", None)]
    #[case("8", None)]
    #[case("8.0.1.1", None)]
    #[case("8.0.1-debian", None)]
    #[case("v11.0.0-rc.1", None)]
    #[case("v10.4.0.1-patch", None)]
    #[case("8.0.1+build", None)]
    fn semver_patch_parses(#[case] tag: &str, #[case] expected: Option<TagVersion>) {
        assert_eq!(Scheme::SemverPatch.parse(tag), expected);
    }

    #[rstest]
    #[case("v9.3.0", version("v9.3.0", 0))]
    #[case("v9.3.0-hotfix.2", version("v9.3.0", 2))]
    #[case("9.3.0-hotfix.12", version("9.3.0", 12))]
    #[case("v9.3.0-hotfix.0", None)]
    #[case("v9.3.0-hotfix.02", None)]
    #[case("v9.3.0-hotfix", None)]
    #[case("v9.3.0-hotfix.", None)]
    #[case("v9.3.0-hotfix.2.1", None)]
    #[case("v9.3.0-hotfix2", None)]
    #[case("v9.3.0-Hotfix.2", None)]
    #[case("v9.3.0-patch.1", None)]
    #[case("v9.3.0.1-patch", None)]
    #[case("v9.3.0-hotfix.99999999999999999999", None)]
    fn suffix_counter_parses(#[case] tag: &str, #[case] expected: Option<TagVersion>) {
        assert_eq!(hotfix().parse(tag), expected);
    }

    #[test]
    fn suffix_counter_counts_its_word() {
        let scheme = Scheme::suffix_counter("patch").expect("patch is a valid word");
        assert_eq!(scheme.parse("v11.0.0-patch.1"), version("v11.0.0", 1));
        assert_eq!(scheme.parse("v11.0.0-hotfix.1"), None);
    }

    #[rstest]
    #[case("")]
    #[case("hot-fix")]
    #[case("hot.fix")]
    #[case("1hotfix")]
    #[case("hotfix ")]
    #[case("hötfix")]
    fn suffix_counter_rejects_word(#[case] word: &str) {
        assert_eq!(Scheme::suffix_counter(word).err(), Some(SchemeError::InvalidSuffix { word: word.to_owned() }));
    }

    #[rstest]
    #[case("v10.4.0", version("10.4.0", 0))]
    #[case("v10.4.0-p3", version("10.4.0", 3))]
    #[case("v10.4.0-p0", version("10.4.0", 0))]
    #[case("v10.4.0-p03", None)]
    #[case("v10.4.0-p", None)]
    #[case("v10.4.0-p99999999999999999999", None)]
    #[case("v10.4.0-p3-extra", None)]
    #[case("xv10.4.0", None)]
    fn regex_parses(#[case] tag: &str, #[case] expected: Option<TagVersion>) {
        assert_eq!(design_regex().parse(tag), expected);
    }

    #[test]
    fn regex_is_anchored() {
        let scheme = Scheme::regex(r"(?P<line>\d+\.\d+)\.(?P<level>\d+)").expect("pattern compiles");
        assert_eq!(scheme.parse("1.2.3"), version("1.2", 3));
        assert_eq!(scheme.parse("v1.2.3"), None);
        assert_eq!(scheme.parse("1.2.3-rc"), None);
    }

    #[test]
    fn regex_prefers_whole_match() {
        // Leftmost-first alternation would stop at `1.2` without the anchors.
        let scheme = Scheme::regex(r"(?P<line>1\.2)|(?P<level>1\.2\.3)").expect("pattern compiles");
        assert_eq!(scheme.parse("1.2"), version("1.2", 0));
        assert_eq!(scheme.parse("1.2.3"), None);
    }

    #[test]
    fn regex_built_elsewhere_needs_whole_match() {
        let scheme = Scheme::Regex(regex::Regex::new(r"(?P<line>\d+\.\d+)").expect("pattern compiles"));
        assert_eq!(scheme.parse("1.2"), version("1.2", 0));
        assert_eq!(scheme.parse("1.2-rc"), None);
    }

    #[test]
    fn regex_empty_line_is_outside() {
        let scheme = Scheme::regex(r"(?P<line>v?)(?P<level>\d+)").expect("pattern compiles");
        assert_eq!(scheme.parse("12"), None);
        assert_eq!(scheme.parse("v12"), version("v", 12));
    }

    #[test]
    fn regex_needs_line_group() {
        let pattern = r"v(?P<level>\d+)";
        assert_eq!(Scheme::regex(pattern).err(), Some(SchemeError::MissingLineGroup { pattern: pattern.to_owned() }));
    }

    #[rstest]
    #[case::unbalanced(r"(?P<line>\d+")]
    #[case::escapes_anchors(r"(?P<line>a)|(b")]
    #[case::too_large(r"(?P<line>(\w{100}){100}){100}")]
    #[case::too_long(&"a".repeat(MAX_PATTERN_LENGTH + 1))]
    fn regex_rejects_pattern(#[case] pattern: &str) {
        let error = Scheme::regex(pattern).err();
        assert!(matches!(error, Some(SchemeError::InvalidPattern { .. })), "got {error:?}");
    }

    #[rstest]
    #[case("patch-suffix", None, None, "patch-suffix")]
    #[case("semver-patch", None, None, "semver-patch")]
    #[case("suffix-counter", Some("hotfix"), None, "suffix-counter")]
    #[case("regex", None, Some("(?P<line>.+)"), "regex")]
    fn from_settings_names_scheme(#[case] name: &str, #[case] suffix: Option<&str>, #[case] pattern: Option<&str>, #[case] expected: &str) {
        let scheme = Scheme::from_settings(name, suffix, pattern).expect("settings are valid");
        assert_eq!(scheme.name(), expected);
    }

    #[test]
    fn from_settings_rejects_unknown_name() {
        let error = Scheme::from_settings("calver", None, None).err().map(|error| error.to_string());
        assert_eq!(error.as_deref(), Some(r#"unknown scheme "calver": use patch-suffix, semver-patch, suffix-counter or regex"#));
    }

    #[test]
    fn tag_length_limit_applies() {
        let digits = "1".repeat(MAX_TAG_LENGTH - "v.0.0.1-patch".len());
        let longest = format!("v{digits}.0.0.1-patch");
        assert_eq!(longest.len(), MAX_TAG_LENGTH);
        assert_eq!(Scheme::PatchSuffix.parse(&longest), version(&format!("v{digits}.0.0"), 1));

        let too_long = format!("v1{digits}.0.0.1-patch");
        assert_eq!(Scheme::PatchSuffix.parse(&too_long), None);
        assert_eq!(design_regex().parse(&too_long), None);
    }

    #[test]
    fn newest_patch_ignores_listing_order() {
        let tags = ["v10.4.0.10-patch", "v10.4.0.9-patch", "v10.4.0", "v10.4.0.2-patch", "latest", "v10.4.0.11-patch"];
        let newest = Scheme::PatchSuffix.newest_patch("v10.4.0", tags);
        assert_eq!(newest, Some(("v10.4.0.11-patch", TagVersion { line: "v10.4.0".to_owned(), level: 11 })));
    }

    #[test]
    fn newer_patches_sorted_numerically() {
        let tags = ["v10.4.0.10-patch", "v10.4.0.9-patch", "v10.4.0.1-patch", "v10.4.0.2-patch"];
        let newer: Vec<&str> = Scheme::PatchSuffix.newer_patches("v10.4.0.1-patch", tags).into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(newer, ["v10.4.0.2-patch", "v10.4.0.9-patch", "v10.4.0.10-patch"]);
    }

    #[test]
    fn newer_patches_stay_in_line() {
        let tags = [
            "v10.4.0.3-patch",
            "v10.4.1",
            "v10.4.1.5-patch",
            "v10.5.0.1-patch",
            "10.4.0.7-patch",
            "v10.4.0.160-snapshot.7",
            "v10.4.0.8-pisp",
            "v10.4.0.09-patch",
            "v10.4.0-patch",
            "v10.4.0.99999999999999999999-patch",
        ];
        let newer: Vec<&str> = Scheme::PatchSuffix.newer_patches("v10.4.0", tags).into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(newer, ["v10.4.0.3-patch"]);
    }

    #[test]
    fn newer_patches_from_running_patch() {
        let tags = ["v10.4.0.1-patch", "v10.4.0.2-patch", "v10.4.0.3-patch", "v10.4.1.4-patch"];
        let newer: Vec<&str> = Scheme::PatchSuffix.newer_patches("v10.4.0.2-patch", tags).into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(newer, ["v10.4.0.3-patch"]);
    }

    #[test]
    fn newer_patches_drop_repeated_tags() {
        let tags = ["v10.4.0.2-patch", "v10.4.0.2-patch"];
        assert_eq!(Scheme::PatchSuffix.newer_patches("v10.4.0", tags).len(), 1);
    }

    #[rstest]
    #[case("latest")]
    #[case("v10.4.0-patch")]
    #[case("")]
    fn newest_patch_of_outside_tag_is_none(#[case] running: &str) {
        assert_eq!(Scheme::PatchSuffix.newest_patch(running, ["v10.4.0.1-patch", "latest"]), None);
    }

    #[test]
    fn newest_patch_none_when_current() {
        assert_eq!(Scheme::PatchSuffix.newest_patch("v10.4.0.3-patch", ["v10.4.0.1-patch", "v10.4.0.3-patch"]), None);
    }

    #[test]
    fn newest_patch_semver_and_hotfix() {
        let mysql = ["8.0.9", "8.0.10", "8.1.0", "8.0.36", "8.0"];
        assert_eq!(Scheme::SemverPatch.newest_patch("8.0.9", mysql).map(|(tag, _)| tag), Some("8.0.36"));

        let adapter = ["v9.3.0-hotfix.10", "v9.3.0-hotfix.9", "v9.3.1", "v9.3.0-hotfix.2"];
        assert_eq!(hotfix().newest_patch("v9.3.0", adapter).map(|(tag, _)| tag), Some("v9.3.0-hotfix.10"));
    }

    #[test]
    fn newest_patch_regex_tie_is_deterministic() {
        let scheme = Scheme::regex(r"v(?P<line>\d+\.\d+)(?:\.(?P<level>\d+))?(?:-[a-z]+)?").expect("pattern compiles");
        let forward = scheme.newest_patch("v1.2", ["v1.2.3-alpine", "v1.2.3-debian"]);
        let backward = scheme.newest_patch("v1.2", ["v1.2.3-debian", "v1.2.3-alpine"]);
        assert_eq!(forward, backward);
        assert_eq!(forward.map(|(tag, _)| tag), Some("v1.2.3-debian"));
    }

    #[rstest]
    #[case("v10.4.0.9-patch", "v10.4.0.10-patch", Some(Ordering::Less))]
    #[case("v10.4.0.10-patch", "v10.4.0", Some(Ordering::Greater))]
    #[case("v10.4.0.2-patch", "v10.4.0.2-patch", Some(Ordering::Equal))]
    #[case("v10.4.0.2-patch", "v10.4.1.1-patch", None)]
    #[case("v10.4.0.2-patch", "latest", None)]
    fn compare_orders_by_level(#[case] left: &str, #[case] right: &str, #[case] expected: Option<Ordering>) {
        assert_eq!(Scheme::PatchSuffix.compare(left, right), expected);
    }

    #[test]
    fn scheme_names() {
        assert_eq!(Scheme::PatchSuffix.name(), "patch-suffix");
        assert_eq!(Scheme::SemverPatch.name(), "semver-patch");
        assert_eq!(hotfix().name(), "suffix-counter");
        assert_eq!(design_regex().name(), "regex");
    }

    /// Spells level `level` of line `v{major}.{minor}.{patch}` in each built-in scheme.
    fn spell(scheme: &Scheme, base: (u32, u32, u32), level: u64) -> String {
        let (major, minor, patch) = base;
        match (scheme, level) {
            (Scheme::SemverPatch, _) => format!("v{major}.{minor}.{level}"),
            (_, 0) => format!("v{major}.{minor}.{patch}"),
            (Scheme::SuffixCounter { word }, _) => format!("v{major}.{minor}.{patch}-{word}.{level}"),
            _ => format!("v{major}.{minor}.{patch}.{level}-patch"),
        }
    }

    fn built_in_schemes() -> impl Strategy<Value = Scheme> {
        prop_oneof![Just(Scheme::PatchSuffix), Just(Scheme::SemverPatch), Just(Scheme::SuffixCounter { word: "hotfix".to_owned() })]
    }

    proptest! {
        #[test]
        fn ordering_is_numeric(scheme in built_in_schemes(), base in (0u32..100, 0u32..100, 0u32..100), left in any::<u64>(), right in any::<u64>()) {
            let left_tag = spell(&scheme, base, left);
            let right_tag = spell(&scheme, base, right);
            prop_assert_eq!(scheme.parse(&left_tag).map(|version| version.level), Some(left));
            prop_assert_eq!(scheme.compare(&left_tag, &right_tag), Some(left.cmp(&right)));
        }

        #[test]
        fn ordering_is_total(scheme in built_in_schemes(), levels in proptest::collection::vec(0u64..1_000_000, 1..20)) {
            let tags: Vec<String> = levels.iter().map(|&level| spell(&scheme, (1, 2, 3), level)).collect();
            let mut sorted = tags.clone();
            sorted.sort_by(|left, right| scheme.compare(left, right).expect("tags share a line"));
            let sorted_levels: Vec<u64> = sorted.iter().filter_map(|tag| scheme.parse(tag)).map(|version| version.level).collect();
            let mut expected = levels.clone();
            expected.sort_unstable();
            prop_assert_eq!(sorted_levels, expected);
        }

        #[test]
        fn newest_patch_ignores_order(scheme in built_in_schemes(), levels in proptest::collection::vec(0u64..50, 0..20), running in 0u64..50, seed in any::<u64>()) {
            let tags: Vec<String> = levels.iter().map(|&level| spell(&scheme, (1, 2, 3), level)).collect();
            let mut shuffled = tags.clone();
            // A rotation and a reversal change the order without a random number generator.
            if !shuffled.is_empty() {
                let turn = usize::try_from(seed % shuffled.len() as u64).unwrap_or(0);
                shuffled.rotate_left(turn);
            }
            shuffled.reverse();
            let running_tag = spell(&scheme, (1, 2, 3), running);
            let newest = scheme.newest_patch(&running_tag, tags.iter().map(String::as_str));
            let newest_shuffled = scheme.newest_patch(&running_tag, shuffled.iter().map(String::as_str));
            prop_assert_eq!(&newest, &newest_shuffled);
            let expected = levels.iter().copied().filter(|&level| level > running).max();
            prop_assert_eq!(newest.map(|(_, version)| version.level), expected);
        }

        #[test]
        fn parse_never_panics(tag in "\\PC{0,140}") {
            for scheme in [Scheme::PatchSuffix, Scheme::SemverPatch, hotfix(), design_regex()] {
                let _ = scheme.parse(&tag);
            }
        }

        #[test]
        fn parse_never_panics_on_near_tags(tag in "v?[0-9٠-٩.]{0,30}(-patch|-hotfix\\.[0-9]{0,25}|\\.[0-9]{0,25}-patch)?") {
            for scheme in [Scheme::PatchSuffix, Scheme::SemverPatch, hotfix(), design_regex()] {
                if let Some(version) = scheme.parse(&tag) {
                    prop_assert!(tag.starts_with(&version.line) || matches!(scheme, Scheme::Regex(_)));
                }
            }
        }
    }
}
