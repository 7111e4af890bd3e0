//! The rewrite decision: one pure function used by the webhook and the scanner's rollout.

use crate::approvals::Approvals;

/// A change of one image's tag (and digest) to an approved patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The image as it was.
    pub from: String,
    /// The image as it becomes: same name as written, approved tag, approved digest or none.
    pub to: String,
    /// Index of the approval applied.
    pub approval_index: usize,
}

/// Why an image is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// The reference cannot be parsed.
    InvalidReference(String),
    /// Pinned by digest alone.
    PinnedByDigest,
    /// The tag is outside the repository's versioning scheme.
    OutsideScheme,
    /// No approval for this repository and release line.
    NoApproval,
    /// Already at or above the approved patch level.
    AtOrAboveApproved {
        /// The approved patch tag.
        approved: String,
    },
    /// An approval exists, but not for this namespace.
    NamespaceOutOfScope,
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rewrite to an approved patch.
    Rewrite(Rewrite),
    /// Leave alone.
    Keep(KeepReason),
}

/// Decides whether `image` in `namespace` is rewritten under `approvals`.
pub fn decide(image: &str, namespace: &str, approvals: &Approvals) -> Decision {
    let _ = (image, namespace, approvals);
    todo!()
}
