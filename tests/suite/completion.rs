//! `genfleet completion bash|zsh|fish`: each script is produced and
//! parses in its shell, and bash's completes what a user pressing Tab
//! expects (subcommands, a subcommand's flags).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::cli;

/// The script for `shell`, checked to name the commands a user types first.
fn script(shell: &str) -> String {
    let (ok, stdout, stderr) = cli(&["completion", shell]);
    assert!(ok, "genfleet completion {shell}: {stderr}");
    for word in ["submit", "plan", "completion", "--generate"] {
        assert!(stdout.contains(word), "{shell}'s script lacks {word}");
    }
    stdout
}

/// What bash offers for the last of `words` (the word under the cursor)
/// with the script at `path` sourced, as bash's programmable completion
/// calls `_genfleet`.
fn bash_offers(path: &Path, words: &[&str]) -> Vec<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_genfleet genfleet "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(path)
        .args(words)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash completing {words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `shell -n`-style syntax check where `shell` is installed; false where not.
fn parses_in(shell: &str, check: &[&str], path: &Path) -> bool {
    let Ok(out) = Command::new(shell).args(check).arg(path).output() else {
        // .ci/test.sh installs every shell and sets GENFLEET_REQUIRE_TOOLS.
        assert!(
            std::env::var("GENFLEET_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{shell} is not installed (.ci/test.sh installs it)"
        );
        eprintln!("{shell} is not installed: its script's syntax is not checked");
        return false;
    };
    assert!(
        out.status.success(),
        "{shell} rejects its script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn bash_completes_subcommands_and_their_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("genfleet.bash");
    std::fs::write(&path, script("bash")).expect("write");
    assert!(parses_in("bash", &["-n"], &path), "bash is needed");
    assert_eq!(bash_offers(&path, &["genfleet", "pl"]), ["plan"]);
    assert_eq!(
        bash_offers(&path, &["genfleet", "plan", "--gen"]),
        ["--generate"]
    );
    let shells = bash_offers(&path, &["genfleet", "completion", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shell} in {shells:?}");
    }
}

#[test]
fn zsh_and_fish_get_scripts_that_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, check) in [("zsh", &["-n"][..]), ("fish", &["--no-execute"][..])] {
        let path = dir.path().join(format!("genfleet.{shell}"));
        std::fs::write(&path, script(shell)).expect("write");
        if parses_in(shell, check, &path) && shell == "fish" {
            // fish can say what it would complete, as bash's test does.
            let out = Command::new("fish")
                .arg("-c")
                .arg("source $argv[1]; complete -C 'genfleet pl'")
                .arg(&path)
                .output()
                .expect("run fish");
            let offers = String::from_utf8_lossy(&out.stdout);
            let first: Vec<&str> = offers
                .lines()
                .filter_map(|l| l.split('\t').next())
                .collect();
            assert_eq!(first, ["plan"], "fish completing `genfleet pl`: {offers}");
        }
    }
}

#[test]
fn an_unknown_shell_is_refused_with_the_ones_there_are() {
    let (ok, _, stderr) = cli(&["completion", "tcsh"]);
    assert!(!ok);
    for shell in ["bash", "zsh", "fish"] {
        assert!(stderr.contains(shell), "{stderr}");
    }
}
