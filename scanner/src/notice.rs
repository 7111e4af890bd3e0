//! The Slack notice of one scan: Block Kit messages with a plain-text fallback.
//!
//! Entries are grouped by repository and patch, so that a DaemonSet's pods or several
//! workloads on one image make one entry. A notice larger than Slack accepts is split
//! into several messages, never cut short:
//!
//! ```text
//!  entry ─► pieces (title, digest, workloads…, approval) ─► sections ≤ 3000 chars
//!  sections ─► messages: header + cluster line + ≤ 48 sections, fallback ≤ 36000 chars
//! ```
//!
//! Each message lists the patches whose entries it carries in full, so that the state
//! records a patch only when every message that names it was accepted. The errors of
//! the approvals document come first, as one group, and are recorded the same way, as
//! are the unconfirmed approvals, which come last.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::discovery::WorkloadId;
use crate::state::PatchKey;

/// Slack's maximum of blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's maximum of characters in a section's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Budget of characters of all sections of one message, so that the fallback `text`
/// (the same content) stays under Slack's 40,000-character limit.
pub const MAX_MESSAGE_CHARS: usize = 36_000;
/// Blocks that every message starts with: the header and the cluster line.
const FIXED_BLOCKS: usize = 2;

/// One patch of one repository, with the workloads that can take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchEntry {
    /// The repository (source registry) and the newest patch tag.
    pub key: PatchKey,
    /// The tags the workloads run now, sorted.
    pub running_tags: Vec<String>,
    /// The patch's manifest digest, when the registry gave it.
    pub digest: Option<String>,
    /// The workloads on this repository and release line.
    pub workloads: Vec<EntryWorkload>,
    /// The `approvedBy` of the approval, when this scan approved the patch under the `auto` policy.
    pub auto_approved_by: Option<String>,
}

/// One container that runs an image of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryWorkload {
    /// The workload.
    pub workload: WorkloadId,
    /// The container.
    pub container: String,
    /// The tag it runs.
    pub running_tag: String,
}

/// A change that rollout made, or tried to make, to one workload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RolloutEntry {
    /// The workload.
    pub workload: WorkloadId,
    /// `container: old image → new image`, one per changed container.
    pub changes: Vec<String>,
    /// The API server's error, when the patch failed.
    pub error: Option<String>,
    /// Whether this is only the plan of a dry run, which changed nothing.
    #[serde(rename = "dryRun")]
    pub dry_run: bool,
}

/// Everything one scan sends to Slack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notice {
    /// The cluster name.
    pub cluster: String,
    /// The controller namespace, named in the approval instructions.
    pub controller_namespace: String,
    /// New patches, sorted.
    pub entries: Vec<PatchEntry>,
    /// Rollouts of this scan.
    pub rollouts: Vec<RolloutEntry>,
    /// A short note on the configuration error of this scan, shown under the summary line
    /// of every message. It alone never makes a message: [`Notice::approvals_errors`] does.
    pub configuration_error: Option<String>,
    /// Errors of the approvals document that were not notified before, sent in full.
    pub approvals_errors: Option<ApprovalsErrors>,
    /// Approvals that this scan did not roll out, because the registry does not serve their
    /// tag or digest, one description each. Empty when this set was notified before.
    pub unconfirmed_approvals: Vec<String>,
}

/// The errors of the approvals document, as the report lists them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalsErrors {
    /// The parser's error and the approvals used instead, when the document cannot be parsed.
    pub unparsable: Option<String>,
    /// Invalid entries, skipped: `section[index] (line N): problem and fix`.
    pub invalid_entries: Vec<String>,
}

impl ApprovalsErrors {
    /// Returns every error text, sorted: the set that the state records as notified.
    pub fn texts(&self) -> Vec<String> {
        let mut texts: Vec<String> = self.unparsable.iter().chain(&self.invalid_entries).cloned().collect();
        texts.sort();
        texts.dedup();
        texts
    }
}

/// One message to post to the incoming webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// The JSON body: `text` and `blocks`.
    pub payload: Value,
    /// Patches named in this message.
    pub patches: BTreeSet<PatchKey>,
    /// Whether this message carries some of [`Notice::approvals_errors`].
    pub approvals_errors: bool,
    /// Whether this message carries some of [`Notice::unconfirmed_approvals`].
    pub unconfirmed_approvals: bool,
}

/// A run of text that stays in one section when it fits.
struct Piece {
    text: String,
}

/// A section of a message and the patch it belongs to.
struct Section {
    text: String,
    patch: Option<PatchKey>,
    approvals_errors: bool,
    unconfirmed_approvals: bool,
    /// The first section of a group (an entry or the rollouts) that should start on a fresh message if possible.
    group_start: bool,
    /// Sections in the group, this one included, counted from here to its end.
    group_remaining: usize,
    /// Characters of the group, counted from here to its end.
    group_remaining_chars: usize,
}

impl Notice {
    /// Checks whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.rollouts.is_empty() && self.unconfirmed_approvals.is_empty() && self.approvals_errors.is_none()
    }

    /// Builds the messages, each within Slack's limits.
    pub fn to_messages(&self) -> Vec<SlackMessage> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut sections = Vec::new();
        if let Some(errors) = &self.approvals_errors {
            push_group(&mut sections, approvals_error_pieces(errors, &self.controller_namespace), None);
            for section in &mut sections {
                section.approvals_errors = true;
            }
        }
        for entry in &self.entries {
            push_group(&mut sections, entry_pieces(entry, &self.controller_namespace), Some(&entry.key));
        }
        if !self.rollouts.is_empty() {
            push_group(&mut sections, rollout_pieces(&self.rollouts), None);
        }
        if !self.unconfirmed_approvals.is_empty() {
            let first = sections.len();
            push_group(&mut sections, unconfirmed_pieces(&self.unconfirmed_approvals), None);
            for section in &mut sections[first..] {
                section.unconfirmed_approvals = true;
            }
        }

        let mut pages: Vec<Vec<Section>> = vec![Vec::new()];
        for section in sections {
            let page = pages.last_mut().expect("pages start with one page");
            let blocks = FIXED_BLOCKS + page.len();
            let chars: usize = page.iter().map(|section| section.text.chars().count()).sum();
            // Keep a group on one page when it fits on an empty one; otherwise fill pages.
            let group_fits_empty = FIXED_BLOCKS + section.group_remaining <= MAX_BLOCKS && section.group_remaining_chars <= MAX_MESSAGE_CHARS;
            let group_fits_here = blocks + section.group_remaining <= MAX_BLOCKS && chars + section.group_remaining_chars <= MAX_MESSAGE_CHARS;
            let section_fits_here = blocks < MAX_BLOCKS && chars + section.text.chars().count() <= MAX_MESSAGE_CHARS;
            let start_new = !page.is_empty() && (!section_fits_here || (section.group_start && group_fits_empty && !group_fits_here));
            if start_new {
                pages.push(Vec::new());
            }
            pages.last_mut().expect("a page was just ensured").push(section);
        }

        let total = pages.len();
        pages.into_iter().enumerate().map(|(index, page)| self.message(&page, index + 1, total)).collect()
    }

    fn message(&self, sections: &[Section], part: usize, parts: usize) -> SlackMessage {
        let title = if parts > 1 { format!("Image patches ({part} of {parts})") } else { "Image patches".to_string() };
        let mut summary = format!(
            "Cluster *{}*: {} new patch(es), {} rollout(s)",
            escape(&self.cluster),
            self.entries.len(),
            self.rollouts.len()
        );
        if let Some(error) = &self.configuration_error {
            summary.push_str(&format!("\n:warning: Configuration error: {}", escape(error)));
        }
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}),
        ];
        let mut fallback = vec![format!("{title} on cluster {}", self.cluster)];
        if let Some(error) = &self.configuration_error {
            fallback.push(format!("Configuration error: {error}"));
        }
        let mut patches = BTreeSet::new();
        for section in sections {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": section.text}}));
            fallback.push(section.text.clone());
            if let Some(patch) = &section.patch {
                patches.insert(patch.clone());
            }
        }
        let approvals_errors = sections.iter().any(|section| section.approvals_errors);
        let unconfirmed_approvals = sections.iter().any(|section| section.unconfirmed_approvals);
        SlackMessage { payload: json!({"text": fallback.join("\n"), "blocks": blocks}), patches, approvals_errors, unconfirmed_approvals }
    }
}

fn push_group(sections: &mut Vec<Section>, pieces: Vec<Piece>, patch: Option<&PatchKey>) {
    let texts = pack_pieces(pieces);
    let count = texts.len();
    let mut remaining_chars: usize = texts.iter().map(|text| text.chars().count()).sum();
    for (index, text) in texts.into_iter().enumerate() {
        let chars = text.chars().count();
        sections.push(Section {
            text,
            patch: patch.cloned(),
            approvals_errors: false,
            unconfirmed_approvals: false,
            group_start: index == 0,
            group_remaining: count - index,
            group_remaining_chars: remaining_chars,
        });
        remaining_chars -= chars;
    }
}

/// Packs pieces into section texts of at most [`MAX_SECTION_CHARS`]; a piece that is
/// too long by itself is split at line ends, and a line that is too long at characters.
fn pack_pieces(pieces: Vec<Piece>) -> Vec<String> {
    let mut units = Vec::new();
    for piece in pieces {
        if piece.text.chars().count() <= MAX_SECTION_CHARS {
            units.push(piece.text);
            continue;
        }
        for line in piece.text.lines() {
            units.extend(split_chars(line, MAX_SECTION_CHARS));
        }
    }

    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    for unit in units {
        let joined = current.chars().count() + 1 + unit.chars().count();
        if !current.is_empty() && joined > MAX_SECTION_CHARS {
            sections.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&unit);
    }
    if !current.is_empty() {
        sections.push(current);
    }
    sections
}

fn split_chars(line: &str, limit: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(limit).map(|chunk| chunk.iter().collect()).collect()
}

fn entry_pieces(entry: &PatchEntry, controller_namespace: &str) -> Vec<Piece> {
    let running = entry.running_tags.iter().map(|tag| format!("`{}`", escape(tag))).collect::<Vec<_>>().join(", ");
    let mut pieces = vec![Piece { text: format!("*{}*: {running} → `{}`", escape(&entry.key.repository), escape(&entry.key.patch)) }];
    if let Some(digest) = &entry.digest {
        pieces.push(Piece { text: format!("Digest: `{}`", escape(digest)) });
    }
    pieces.push(Piece { text: format!("Workloads ({}):", entry.workloads.len()) });
    for workload in &entry.workloads {
        pieces.push(Piece {
            text: format!(
                "• {}, container `{}`, runs `{}`",
                escape(&workload.workload.to_string()),
                escape(&workload.container),
                escape(&workload.running_tag)
            ),
        });
    }
    match &entry.auto_approved_by {
        Some(approved_by) => pieces.push(Piece {
            text: format!(
                "Approved automatically by the repository's `auto` policy (approvedBy: {}).",
                escape(approved_by)
            ),
        }),
        None => {
            pieces.push(Piece {
                text: format!(
                    "To approve, add this entry under `approvals:` with `kubectl -n {} edit configmap {}`:",
                    escape(controller_namespace),
                    common::approvals::CONFIGMAP_NAME
                ),
            });
            pieces.push(Piece { text: format!("```{}```", escape(&approval_snippet(entry))) });
        }
    }
    pieces
}

/// Returns the approvals entry, in YAML, that approves `entry`'s patch for the line it names.
pub fn approval_snippet(entry: &PatchEntry) -> String {
    let version = entry.running_tags.first().map(String::as_str).unwrap_or_default();
    let mut snippet = format!(
        "- image: {}\n  version: {}\n  patch: {}\n",
        entry.key.repository, version, entry.key.patch
    );
    if let Some(digest) = &entry.digest {
        snippet.push_str(&format!("  digest: {digest}\n"));
    }
    snippet
}

fn rollout_pieces(rollouts: &[RolloutEntry]) -> Vec<Piece> {
    let mut pieces = vec![Piece { text: "*Rollouts*".to_string() }];
    for rollout in rollouts {
        let outcome = match &rollout.error {
            Some(error) => format!("failed: {}", escape(error)),
            None if rollout.dry_run => "would be patched (dry run)".to_string(),
            None => "patched".to_string(),
        };
        let changes = rollout.changes.iter().map(|change| escape(change)).collect::<Vec<_>>().join("; ");
        pieces.push(Piece { text: format!("• {} {outcome}: {changes}", escape(&rollout.workload.to_string())) });
    }
    pieces
}

fn approvals_error_pieces(errors: &ApprovalsErrors, controller_namespace: &str) -> Vec<Piece> {
    let configmap = format!("{}/{}", escape(controller_namespace), common::approvals::CONFIGMAP_NAME);
    let mut pieces = vec![Piece { text: format!("*Errors in the approvals ConfigMap {configmap}*") }];
    if let Some(unparsable) = &errors.unparsable {
        pieces.push(Piece { text: format!("Cannot be parsed: {}", escape(unparsable)) });
    }
    if !errors.invalid_entries.is_empty() {
        pieces.push(Piece { text: format!("Invalid entries, skipped while the other entries stay in force ({}):", errors.invalid_entries.len()) });
        pieces.extend(errors.invalid_entries.iter().map(|error| Piece { text: format!("• {}", escape(error)) }));
    }
    pieces.push(Piece {
        text: format!(
            "Fix them with `kubectl -n {} edit configmap {}`. This message is sent again only when the errors change.",
            escape(controller_namespace),
            common::approvals::CONFIGMAP_NAME
        ),
    });
    pieces
}

fn unconfirmed_pieces(unconfirmed_approvals: &[String]) -> Vec<Piece> {
    let mut pieces = vec![Piece { text: "*Approvals not rolled out*".to_string() }];
    pieces.extend(unconfirmed_approvals.iter().map(|description| Piece { text: format!("• {}", escape(description)) }));
    pieces.push(Piece {
        text: "The scan report lists these approvals on every scan. This message is sent again only when the list changes, or when it returns after a scan found none.".to_string(),
    });
    pieces
}

/// Escapes the three characters that Slack's mrkdwn reserves.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::WorkloadKind;

    fn workload(index: usize) -> EntryWorkload {
        EntryWorkload {
            workload: WorkloadId { namespace: "mojaloop".into(), kind: WorkloadKind::Deployment, name: format!("quoting-service-{index:04}") },
            container: "quoting-service".into(),
            running_tag: "v10.4.0".into(),
        }
    }

    fn entry(repository: &str, workloads: usize) -> PatchEntry {
        PatchEntry {
            key: PatchKey { repository: repository.into(), patch: "v10.4.0.2-patch".into() },
            running_tags: vec!["v10.4.0".into()],
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            workloads: (0..workloads).map(workload).collect(),
            auto_approved_by: None,
        }
    }

    fn notice(entries: Vec<PatchEntry>) -> Notice {
        Notice { cluster: "hub-prod".into(), controller_namespace: "image-patch-system".into(), entries, rollouts: Vec::new(), configuration_error: None, approvals_errors: None, unconfirmed_approvals: Vec::new() }
    }

    fn all_text(messages: &[SlackMessage]) -> String {
        messages
            .iter()
            .flat_map(|message| message.payload["blocks"].as_array().unwrap().clone())
            .filter_map(|block| block["text"]["text"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn check_limits(messages: &[SlackMessage]) {
        for message in messages {
            let blocks = message.payload["blocks"].as_array().unwrap();
            assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
            for block in blocks {
                let text = block["text"]["text"].as_str().unwrap();
                assert!(text.chars().count() <= MAX_SECTION_CHARS, "section of {} chars", text.chars().count());
            }
            assert!(message.payload["text"].as_str().unwrap().chars().count() <= 40_000);
        }
    }

    #[test]
    fn notice_mentions_configuration_error() {
        let mut notice = notice(vec![entry("docker.io/mojaloop/quoting-service", 1)]);
        notice.configuration_error = Some("approvals <unparsable>".into());

        let messages = notice.to_messages();

        assert_eq!(messages.len(), 1);
        let summary = messages[0].payload["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(summary.contains("Configuration error: approvals &lt;unparsable&gt;"), "{summary}");
        assert!(messages[0].payload["text"].as_str().unwrap().contains("Configuration error: approvals <unparsable>"));
    }

    #[test]
    fn notice_small_is_one_message() {
        let messages = notice(vec![entry("docker.io/mojaloop/quoting-service", 2)]).to_messages();

        assert_eq!(messages.len(), 1);
        let text = all_text(&messages);
        assert!(text.contains("Cluster *hub-prod*"));
        assert!(text.contains("*docker.io/mojaloop/quoting-service*: `v10.4.0` → `v10.4.0.2-patch`"));
        assert!(text.contains("• mojaloop/Deployment/quoting-service-0001, container `quoting-service`, runs `v10.4.0`"));
        assert!(text.contains("kubectl -n image-patch-system edit configmap image-patch-approvals"));
        assert!(text.contains("  patch: v10.4.0.2-patch\n"));
        assert_eq!(messages[0].patches.len(), 1);
        assert!(messages[0].payload["text"].as_str().unwrap().contains("hub-prod"));
    }

    #[test]
    fn notice_empty_has_no_message() {
        assert!(notice(Vec::new()).to_messages().is_empty());
    }

    #[test]
    fn notice_many_workloads_split_sections() {
        let messages = notice(vec![entry("docker.io/mojaloop/quoting-service", 400)]).to_messages();

        check_limits(&messages);
        let text = all_text(&messages);
        for index in 0..400 {
            assert!(text.contains(&format!("quoting-service-{index:04},")), "workload {index} missing");
        }
        assert!(messages.iter().all(|message| message.patches.len() == 1));
    }

    #[test]
    fn notice_many_entries_split_messages() {
        let entries: Vec<PatchEntry> = (0..120).map(|index| entry(&format!("docker.io/mojaloop/service-{index:03}"), 3)).collect();

        let messages = notice(entries).to_messages();

        check_limits(&messages);
        assert!(messages.len() >= 3, "{} messages", messages.len());
        let named: BTreeSet<PatchKey> = messages.iter().flat_map(|message| message.patches.clone()).collect();
        assert_eq!(named.len(), 120);
        // An entry that fits one message is never spread over two.
        let spread: usize = messages.iter().map(|message| message.patches.len()).sum();
        assert_eq!(spread, 120);
        assert_eq!(messages[0].payload["blocks"][0]["text"]["text"], format!("Image patches (1 of {})", messages.len()));
    }

    #[test]
    fn notice_overlong_line_split_not_cut() {
        let mut long = entry("docker.io/mojaloop/quoting-service", 1);
        long.workloads[0].container = "c".repeat(7000);

        let messages = notice(vec![long]).to_messages();

        check_limits(&messages);
        let count = all_text(&messages).matches('c').count();
        assert!(count >= 7000, "only {count} of 7000 characters kept");
    }

    #[test]
    fn notice_auto_approved_entry_has_no_snippet() {
        let mut approved = entry("docker.io/mojaloop/quoting-service", 1);
        approved.auto_approved_by = Some("image-patch-scanner (policy auto)".into());

        let text = all_text(&notice(vec![approved]).to_messages());

        assert!(text.contains("Approved automatically"));
        assert!(!text.contains("edit configmap"));
    }

    #[test]
    fn notice_escapes_mrkdwn() {
        let mut odd = entry("docker.io/mojaloop/a", 1);
        odd.workloads[0].container = "<!channel>&".into();

        let text = all_text(&notice(vec![odd]).to_messages());

        assert!(text.contains("&lt;!channel&gt;&amp;"));
        assert!(!text.contains("<!channel>"));
    }

    #[test]
    fn notice_rollouts_listed() {
        let mut with_rollout = notice(Vec::new());
        with_rollout.rollouts.push(RolloutEntry {
            workload: workload(1).workload,
            changes: vec!["quoting-service: mojaloop/quoting-service:v10.4.0 → mojaloop/quoting-service:v10.4.0.2-patch".into()],
            error: None,
            dry_run: false,
        });

        let messages = with_rollout.to_messages();

        assert_eq!(messages.len(), 1);
        assert!(messages[0].patches.is_empty());
        assert!(all_text(&messages).contains("• mojaloop/Deployment/quoting-service-0001 patched: quoting-service: mojaloop/quoting-service:v10.4.0 → "));
    }

    #[test]
    fn approval_snippet_shape() {
        let snippet = approval_snippet(&entry("docker.io/mojaloop/quoting-service", 1));

        let expected = format!(
            "- image: docker.io/mojaloop/quoting-service\n  version: v10.4.0\n  patch: v10.4.0.2-patch\n  digest: sha256:{}\n",
            "a".repeat(64)
        );
        assert_eq!(snippet, expected);
    }

    #[test]
    fn notice_dry_run_rollout_not_patched() {
        let mut with_rollout = notice(Vec::new());
        with_rollout.rollouts.push(RolloutEntry { workload: workload(1).workload, changes: vec!["app: a:v1.0.0 → a:v1.0.0.1-patch".into()], error: None, dry_run: true });

        let text = all_text(&with_rollout.to_messages());

        assert!(text.contains("quoting-service-0001 would be patched (dry run): app: a:v1.0.0 → a:v1.0.0.1-patch"), "{text}");
    }

    fn invalid_entries() -> ApprovalsErrors {
        ApprovalsErrors {
            unparsable: None,
            invalid_entries: vec![
                "approvals[0] (line 2): patch \"v10.4.0.2-pach\" is not a patch of v10.4.0; use a newer patch such as v10.4.0.1-patch".into(),
                "approvals[1] (line 7): namespaces is empty, so the approval would apply nowhere; list namespaces or remove the key".into(),
            ],
        }
    }

    #[test]
    fn notice_approvals_errors_alone_sent() {
        let mut errors_only = notice(Vec::new());
        errors_only.approvals_errors = Some(invalid_entries());

        let messages = errors_only.to_messages();

        assert_eq!(messages.len(), 1);
        assert!(messages[0].approvals_errors);
        assert!(messages[0].patches.is_empty());
        let text = all_text(&messages);
        assert!(text.contains("Errors in the approvals ConfigMap image-patch-system/image-patch-approvals"), "{text}");
        assert!(text.contains("Invalid entries, skipped while the other entries stay in force (2):"), "{text}");
        assert!(text.contains("• approvals[0] (line 2): patch \"v10.4.0.2-pach\""), "{text}");
        assert!(text.contains("• approvals[1] (line 7): namespaces is empty"), "{text}");
        assert!(text.contains("kubectl -n image-patch-system edit configmap image-patch-approvals"), "{text}");
    }

    #[test]
    fn notice_unparsable_document_sent() {
        let mut unparsable = notice(Vec::new());
        unparsable.configuration_error = Some("ConfigMap image-patch-system/image-patch-approvals cannot be parsed".into());
        unparsable.approvals_errors = Some(ApprovalsErrors {
            unparsable: Some("approvals document is invalid: did not find expected node content at line 1 column 12. This scan used <none>".into()),
            invalid_entries: Vec::new(),
        });

        let messages = unparsable.to_messages();

        assert_eq!(messages.len(), 1);
        let text = all_text(&messages);
        assert!(text.contains("Cannot be parsed: approvals document is invalid: did not find expected node content at line 1 column 12"), "{text}");
        assert!(text.contains("&lt;none&gt;"), "{text}");
        assert!(!text.contains("Invalid entries"), "{text}");
    }

    #[test]
    fn notice_summary_line_alone_not_sent() {
        let mut already_notified = notice(Vec::new());
        already_notified.configuration_error = Some("ConfigMap image-patch-system/image-patch-approvals cannot be parsed".into());

        assert!(already_notified.is_empty());
        assert!(already_notified.to_messages().is_empty());
    }

    #[test]
    fn notice_approvals_errors_come_first() {
        let mut both = notice((0..60).map(|index| entry(&format!("docker.io/mojaloop/service-{index}"), 3)).collect());
        both.approvals_errors = Some(invalid_entries());

        let messages = both.to_messages();

        check_limits(&messages);
        assert!(messages.len() > 1, "{} message(s)", messages.len());
        assert!(messages[0].approvals_errors);
        assert!(messages[1..].iter().all(|message| !message.approvals_errors));
        let first_section = messages[0].payload["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(first_section.starts_with("*Errors in the approvals ConfigMap"), "{first_section}");
    }

    #[test]
    fn approvals_errors_texts_sorted() {
        let errors = ApprovalsErrors { unparsable: Some("z unparsable".into()), invalid_entries: vec!["b".into(), "a".into(), "b".into()] };

        assert_eq!(errors.texts(), ["a", "b", "z unparsable"]);
        assert!(ApprovalsErrors::default().texts().is_empty());
    }

    #[test]
    fn notice_lists_unconfirmed_approvals() {
        let mut unconfirmed = notice(Vec::new());
        unconfirmed.unconfirmed_approvals.push("approvals[0] (r/a:v1.0.0.1-patch): approved digest sha256:a does not match <x>".into());

        let messages = unconfirmed.to_messages();

        assert_eq!(messages.len(), 1);
        let text = all_text(&messages);
        assert!(text.contains("Approvals not rolled out"), "{text}");
        assert!(text.contains("approvals[0] (r/a:v1.0.0.1-patch)"), "{text}");
        assert!(text.contains("&lt;x&gt;"), "{text}");
        assert!(messages[0].unconfirmed_approvals);
        assert!(!messages[0].approvals_errors);
        assert!(text.contains("sent again only when the list changes"), "{text}");
    }

    #[test]
    fn notice_unconfirmed_approvals_flag_last_message() {
        let mut both = notice((0..60).map(|index| entry(&format!("docker.io/mojaloop/service-{index}"), 3)).collect());
        both.unconfirmed_approvals.push("approvals[0] (r/a:v1.0.0.9-patch): the registry has no tag v1.0.0.9-patch".into());

        let messages = both.to_messages();

        assert!(messages.len() > 1, "{} message(s)", messages.len());
        let flagged: Vec<bool> = messages.iter().map(|message| message.unconfirmed_approvals).collect();
        assert_eq!(flagged.iter().filter(|flag| **flag).count(), 1, "{flagged:?}");
        assert!(messages.last().unwrap().unconfirmed_approvals);
        assert!(!messages[0].patches.is_empty());
    }

    #[test]
    fn notice_without_unconfirmed_approvals_not_flagged() {
        let messages = notice(vec![entry("docker.io/mojaloop/quoting-service", 1)]).to_messages();

        assert_eq!(messages.len(), 1);
        assert!(!messages[0].unconfirmed_approvals);
        assert!(!all_text(&messages).contains("Approvals not rolled out"));
    }
}
