//! The user docs (README.md, docs/*.md, deploy/*.md) as a reader meets
//! them: they name no issue numbers (a reader cannot open the project's
//! issues, and "retention is issue 15" stayed in a doc after retention
//! was built), and their "Not yet" sections and "not yet" lines are
//! listed so that whoever changes the code can check them by hand:
//! `cargo test --test suite docs -- --nocapture`.

use std::path::{Path, PathBuf};

/// The files a user reads, README first.
fn user_docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "deploy"] {
        let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("read {dir}/: {e}"))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .collect();
        pages.sort();
        files.extend(pages);
    }
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The places where `text` names an issue by number ("issue 15", "Issue
/// #15", "issues 4 and 5", a number wrapped onto the next line), as (line,
/// the words found). `genfleet certs issue --replica 2` and "the Issuer"
/// are not issue numbers.
fn issue_numbers(text: &str) -> Vec<(usize, String)> {
    // ASCII lowercase keeps every byte where it was.
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    for (start, _) in lower.match_indices("issue") {
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let mut at = start + "issue".len();
        if bytes.get(at) == Some(&b's') {
            at += 1;
        }
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        if bytes.get(at) == Some(&b'#') {
            at += 1;
        }
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            continue;
        }
        let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count();
        let words = lower[start..at + digits]
            .split_whitespace()
            .collect::<Vec<_>>();
        found.push((line, words.join(" ")));
    }
    found
}

#[test]
fn the_issue_finder_finds_issue_numbers_and_nothing_else() {
    let cases = [
        ("retention is issue 15", vec!["issue 15"]),
        ("Built (Issue #15, hardening)", vec!["issue #15"]),
        ("see issues 4 and 5", vec!["issues 4"]),
        ("as in issue\n12, the", vec!["issue 12"]),
        ("genfleet certs issue --replica 2", vec![]),
        ("an Issuer 2 and a tissue 3", vec![]),
        ("pass the issue's goals (90%)", vec![]),
    ];
    for (text, expected) in cases {
        let found: Vec<String> = issue_numbers(text).into_iter().map(|(_, w)| w).collect();
        assert_eq!(found, expected, "in {text:?}");
    }
    assert_eq!(
        issue_numbers("a\nb\nsee issue 9")[0].0,
        3,
        "the line number"
    );
}

#[test]
fn no_user_doc_names_an_issue_number() {
    let mut found = Vec::new();
    for path in user_docs() {
        for (line, words) in issue_numbers(&read(&path)) {
            found.push(format!("{}:{line}: {words}", shown(&path)));
        }
    }
    assert!(
        found.is_empty(),
        "a reader cannot open the project's issues: say what was built, or what is \
         missing and why, instead of its issue number:\n{}",
        found.join("\n")
    );
}

/// The "Not yet" and "Known gaps" sections of a markdown page: (heading
/// line, heading, the section's non-empty lines).
fn gap_sections(text: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut sections = Vec::new();
    let mut current: Option<(usize, String, Vec<String>)> = None;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            sections.extend(current.take());
            let heading = line.trim_start_matches('#').trim().to_lowercase();
            if heading.starts_with("not yet") || heading.starts_with("known gaps") {
                current = Some((index + 1, line.to_string(), Vec::new()));
            }
        } else if let Some((_, _, body)) = current.as_mut() {
            if !line.trim().is_empty() {
                body.push(line.to_string());
            }
        }
    }
    sections.extend(current);
    sections
}

#[test]
fn the_not_yet_sections_and_lines_are_listed_for_a_check_by_hand() {
    let mut listing = String::new();
    let mut empty = Vec::new();
    for path in user_docs() {
        let text = read(&path);
        let name = shown(&path);
        for (line, heading, body) in gap_sections(&text) {
            if body.is_empty() {
                empty.push(format!("{name}:{line}: {heading}"));
            }
            listing += &format!("{name}:{line}: {heading}\n");
            for item in body {
                listing += &format!("    {item}\n");
            }
        }
        for (index, line) in text.lines().enumerate() {
            if line.to_lowercase().contains("not yet") && !line.starts_with('#') {
                listing += &format!("{name}:{}: {}\n", index + 1, line.trim());
            }
        }
    }
    // Shown with --nocapture: each item is a claim about the code.
    eprintln!("What the user docs say is missing; check each against the code:\n{listing}");
    assert!(
        empty.is_empty(),
        "a gap section with nothing in it: remove its heading:\n{}",
        empty.join("\n")
    );
}

#[test]
fn a_gap_section_ends_at_the_next_heading() {
    let page = "# A\n## Not yet\n\n- one\n- two\n## Next\n- three\n## Known gaps\n";
    let sections = gap_sections(page);
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].0, 2);
    assert_eq!(sections[0].2, vec!["- one", "- two"]);
    assert!(sections[1].2.is_empty());
}
