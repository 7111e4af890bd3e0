//! Versioning schemes: how a tag splits into a release line and a patch level.

/// A tag split by a scheme. Two tags are patches of each other when their lines are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    Regex(regex::Regex),
}

impl Scheme {
    /// Splits `tag` into release line and patch level, or `None` when the tag is outside the scheme.
    pub fn parse(&self, tag: &str) -> Option<TagVersion> {
        let _ = tag;
        todo!()
    }

    /// Returns the tags of `tags` that are newer patches of `running`'s line, ordered by
    /// level, lowest first. Empty when `running` is outside the scheme.
    pub fn newer_patches<'a>(&self, running: &str, tags: impl IntoIterator<Item = &'a str>) -> Vec<(&'a str, TagVersion)> {
        let _ = (running, tags.into_iter());
        todo!()
    }

    /// Returns the newest patch of `running`'s line among `tags`, if one is newer than `running`.
    pub fn newest_patch<'a>(&self, running: &str, tags: impl IntoIterator<Item = &'a str>) -> Option<(&'a str, TagVersion)> {
        self.newer_patches(running, tags).pop()
    }

    /// The scheme's name as written in the approvals document (`patch-suffix`, …).
    pub fn name(&self) -> &'static str {
        todo!()
    }
}
