//! Rules shared by the webhook and the scanner: versioning schemes, image references,
//! the approvals document and the rewrite decision. Pure logic, no I/O.
//!
//! ```text
//!   image string ──► reference::ImageRef ──┐
//!                                           ├──► decision::decide ──► Rewrite | Keep(reason)
//!   approvals.yaml ─► approvals::Approvals ─┘          ▲
//!                          │ policy_for(repository)    │
//!                          └──► scheme::Scheme ────────┘ (release line, patch level)
//! ```
#![deny(missing_docs)]

pub mod approvals;
pub mod decision;
pub mod reference;
pub mod scheme;

pub use approvals::{Approval, ApprovalEntry, Approvals, Document, DocumentError, EntryError, Lookup, Mode, Policy, PolicyEntry};
pub use decision::{Decision, KeepReason, Rewrite, decide};
pub use reference::{ImageRef, ReferenceError, Repository};
pub use scheme::{Scheme, SchemeError, TagVersion};
