//! Line numbers of the entries of an approvals document.
//!
//! `serde_yaml_ng` builds values without positions, so a second pass with
//! `saphyr-parser` walks the event stream and records the line where each entry of the
//! top-level lists (`approvals`, `policies`) and each key of the top-level mapping
//! (`registries`) starts. The walk keeps a stack of open collections and records only
//! nodes two levels below the root, so it needs no recursion.

use saphyr_parser::{Event, Parser};

/// Lines (from 1) of the entries of each top-level section, in document order.
#[derive(Debug, Default)]
pub(super) struct Positions {
    approvals: Vec<usize>,
    policies: Vec<usize>,
    registries: Vec<usize>,
}

impl Positions {
    /// Returns the line of entry `index` of `section`, or 0 when it is not known.
    pub(super) fn line(&self, section: &str, index: usize) -> usize {
        let lines = match section {
            "approvals" => &self.approvals,
            "policies" => &self.policies,
            "registries" => &self.registries,
            _ => return 0,
        };
        lines.get(index).copied().unwrap_or(0)
    }
}

/// One open sequence or mapping.
struct Frame {
    is_mapping: bool,
    /// In a mapping, whether the next node is a key.
    expects_key: bool,
    /// In the root mapping, the last key read.
    key: Option<String>,
}

/// Finds the entry lines of `document`. A document that `saphyr-parser` cannot read
/// yields the lines found before the error; the caller reports line 0 for the rest.
pub(super) fn find(document: &str) -> Positions {
    let mut positions = Positions::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_seen = false;

    for event in Parser::new_from_str(document) {
        let Ok((event, span)) = event else {
            break;
        };
        let starts_node = matches!(event, Event::Scalar(..) | Event::Alias(_) | Event::SequenceStart(..) | Event::MappingStart(..));
        if starts_node {
            if stack.is_empty() && root_seen {
                // A second document: the approvals are read from the first one only.
                break;
            }
            root_seen = true;
            record(&mut positions, &mut stack, &event, span.start.line());
        }
        match event {
            Event::SequenceStart(..) => stack.push(Frame { is_mapping: false, expects_key: false, key: None }),
            Event::MappingStart(..) => stack.push(Frame { is_mapping: true, expects_key: true, key: None }),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    positions
}

/// Records the line of a node that starts at `line`, and advances its parent's state.
fn record(positions: &mut Positions, stack: &mut [Frame], event: &Event<'_>, line: usize) {
    let is_key = match stack.last_mut() {
        Some(parent) if parent.is_mapping => {
            let is_key = parent.expects_key;
            parent.expects_key = !parent.expects_key;
            is_key
        }
        _ => false,
    };

    match stack {
        [root] if is_key => {
            root.key = match event {
                Event::Scalar(text, ..) => Some(text.to_string()),
                _ => None,
            };
        }
        [root, section] => {
            let lines = match root.key.as_deref() {
                Some("approvals") if !section.is_mapping => &mut positions.approvals,
                Some("policies") if !section.is_mapping => &mut positions.policies,
                Some("registries") if section.is_mapping && is_key => &mut positions.registries,
                _ => return,
            };
            lines.push(line);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_block_entries() {
        let document = "\
# approvals for the hub
approvals:
  - image: a
    version: v1.0.0

  - image: b
policies:
- image: c
  scheme: semver-patch
- {image: d}
registries:
  mirror.gcr.io: docker.io
  # a comment
  harbor.local: docker.io
";
        let positions = find(document);
        assert_eq!(positions.approvals, [3, 6]);
        assert_eq!(positions.policies, [8, 10]);
        assert_eq!(positions.registries, [12, 14]);
    }

    #[test]
    fn find_flow_entries() {
        let document = "approvals: [{image: a}, {image: b},\n  {image: c}]\nregistries: {a.io: b.io}\n";
        let positions = find(document);
        assert_eq!(positions.approvals, [1, 1, 2]);
        assert_eq!(positions.registries, [3]);
    }

    #[test]
    fn find_skips_nested_lists() {
        let document = "approvals:\n  - image: a\n    namespaces:\n      - x\n      - y\n  - image: b\n";
        assert_eq!(find(document).approvals, [2, 6]);
    }

    #[test]
    fn find_reads_first_document_only() {
        let document = "approvals:\n  - image: a\n---\napprovals:\n  - image: b\n";
        assert_eq!(find(document).approvals, [2]);
    }

    #[test]
    fn line_unknown_is_zero() {
        let positions = find("approvals:\n  - image: a\n");
        assert_eq!(positions.line("approvals", 0), 2);
        assert_eq!(positions.line("approvals", 1), 0);
        assert_eq!(positions.line("other", 0), 0);
    }

    #[test]
    fn find_stops_at_syntax_error() {
        let positions = find("approvals:\n  - image: a\n  - [unclosed\n");
        assert_eq!(positions.line("approvals", 0), 2);
    }
}
