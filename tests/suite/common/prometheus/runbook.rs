//! docs/runbook.md as the monitoring tests read it: its sections by
//! GitHub's anchors, the parts of an alert's section, its PromQL.

use std::collections::BTreeMap;

/// The parts every alert's runbook section has, each a paragraph that
/// starts with its label in bold.
pub const RUNBOOK_PARTS: [&str; 3] = ["What it means.", "What to check.", "What to do."];

/// The runbook's headings outside code blocks: (level, text).
pub fn headings(markdown: &str) -> Vec<(usize, String)> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let level = line.chars().take_while(|c| *c == '#').count();
            found.push((level, line[level..].trim().to_string()));
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, spaces as hyphens, other
/// punctuation than `-` and `_` dropped.
pub fn github_anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The runbook's `## ` sections by their anchors: the text up to the next
/// heading of that level.
pub fn runbook_sections(markdown: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let top = !in_code && (line.starts_with("## ") || line.starts_with("# "));
        if top {
            if let Some((anchor, body)) = current.take() {
                sections.insert(anchor, body);
            }
            if let Some(heading) = line.strip_prefix("## ") {
                current = Some((github_anchor(heading), String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// The text of part `label` of a section: from its bold label to the next
/// part's label or the section's end.
pub fn runbook_part<'a>(section: &'a str, label: &str) -> Option<&'a str> {
    let start = section.find(&format!("**{label}**"))? + label.len() + 4;
    let rest = &section[start..];
    let end = RUNBOOK_PARTS
        .iter()
        .filter_map(|p| rest.find(&format!("**{p}**")))
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// The PromQL of `markdown`: each ```promql block holds expressions
/// separated by blank lines.
pub fn promql_blocks(markdown: &str) -> Vec<String> {
    let mut queries = Vec::new();
    for block in markdown.split("```promql\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        queries.extend(
            block
                .split("\n\n")
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(String::from),
        );
    }
    queries
}
