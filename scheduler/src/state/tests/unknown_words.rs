//! The unknown words of a prompt: the leader's list is kept with the job,
//! in its view and in snapshots, and a list that is not made of the
//! prompt's words is refused at apply.

use super::*;

fn submit_with(id: &str, prompt: &str, unknown: &[&str]) -> pb::command::Kind {
    pb::command::Kind::SubmitJob(pb::SubmitJob {
        job_id: id.into(),
        spec: Some(pb::JobSpec {
            prompt: prompt.into(),
            ..spec(1)
        }),
        request_id: String::new(),
        tenant: String::new(),
        unknown_words: unknown.iter().map(|w| w.to_string()).collect(),
    })
}

#[test]
fn the_unknown_words_are_kept_with_the_job_and_in_snapshots() {
    let mut s = State::default();
    let prompt = "a cyan hexagon on a blue background";
    let r = run(
        &mut s,
        vec![submit_with(
            "j1",
            prompt,
            &["cyan", "hexagon", "blue background"],
        )],
    );
    assert!(r[0].is_ok(), "{r:?}");
    let want = ["cyan", "hexagon", "blue background"];
    assert_eq!(s.job("j1").expect("j1").to_proto().unknown_words, want);
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    assert_eq!(restored.job("j1").expect("j1").unknown_words, want);
    assert_eq!(restored.hash(), s.hash());
}

#[test]
fn a_list_longer_than_its_prompt_allows_is_refused() {
    let mut s = State::default();
    let many: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long_prompt = "word ".repeat(400);
    let r = run(
        &mut s,
        vec![
            submit_with("j1", "a pink circle", &["pink", "pink"]),
            submit_with("j2", "a pink circle", &[""]),
            submit_with("j3", "a red circle", &["a word longer than the prompt"]),
            submit_with("j4", "a dot", &["abcde", "fghij", "k"]),
            submit_with("j5", &long_prompt, &many),
        ],
    );
    for result in r {
        assert!(matches!(result, Err(Rejection::Malformed(_))), "{result:?}");
    }
    assert!(s.job("j1").is_none());
}

/// The check on apply reads bytes, not Unicode case tables: a word whose
/// lower case splits differently ("İzmir") is kept as the leader gave it.
#[test]
fn a_list_the_leader_made_from_any_prompt_is_kept() {
    let mut s = State::default();
    let prompt = "a red circle in İzmir";
    let unknown = pb::vocabulary::unknown_words("world", prompt).unwrap_or_default();
    assert!(!unknown.is_empty(), "İzmir is no word of the world");
    let unknown: Vec<&str> = unknown.iter().map(String::as_str).collect();
    let r = run(&mut s, vec![submit_with("j1", prompt, &unknown)]);
    assert!(r[0].is_ok(), "{r:?}");
}
