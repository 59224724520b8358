//! Words the `world` model does not know, as a new user meets them:
//! `genfleet submit` names them in a note with what the model knows
//! instead, the job keeps them (`genfleet get`, `-o json`, the Videos
//! API object), a prompt that names nothing of the world is accepted and
//! says so, and `genfleet model list -o wide` prints the vocabulary.

use crate::common;

use common::{cli, http_request, init_model, start_scheduler};
use serde_json::{json, Value};

/// What the note must say the world knows instead.
const BACKGROUNDS: &str = "backgrounds black, navy, gray, dark green, brown";

/// Submits `prompt` with the CLI: (job id, the note line, if any).
fn submit(endpoint: &str, prompt: &str) -> (String, Option<String>) {
    let (ok, out, err) = cli(&["submit", "--prompt", prompt, "--scheduler", endpoint]);
    assert!(ok, "submit {prompt:?}: {err}");
    let note = err
        .lines()
        .find(|l| l.starts_with("note:"))
        .map(str::to_string);
    (out.trim().to_string(), note)
}

fn get_json(endpoint: &str, id: &str) -> Value {
    let (ok, out, err) = cli(&["get", id, "-o", "json", "--scheduler", endpoint]);
    assert!(ok, "get {id}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("get -o json: {e}: {out}"))
}

#[test]
fn submit_names_the_words_the_world_model_does_not_know_and_the_job_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &["--api-listen", "127.0.0.1:0"],
    );
    let api = scheduler.api.clone().expect("an api= address");
    let ep = scheduler.endpoint.as_str();
    let words = json!(["cyan", "hexagon", "spinning", "pink"]);

    let (id, note) = submit(ep, "a cyan hexagon spinning on a pink background");
    let note = note.expect("a note on the unknown words");
    for part in [
        r#"does not know "cyan", "hexagon", "spinning", "pink""#,
        "names nothing else it knows",
        "colours red, green",
        BACKGROUNDS,
    ] {
        assert!(note.contains(part), "{part:?} is not in {note:?}");
    }
    assert!(
        !note.contains(r#""on""#),
        "function words are not named: {note}"
    );
    assert_eq!(get_json(ep, &id)["unknown_words"], words);
    let (ok, details, err) = cli(&["get", &id, "--scheduler", ep]);
    assert!(ok, "{err}");
    assert!(
        details.contains(r#"unknown:   "cyan", "hexagon", "spinning", "pink""#),
        "{details}"
    );
    let (status, body) = http_request("GET", &format!("{api}/videos/{id}"), &[], "");
    assert_eq!(status, 200, "{body}");
    let video: Value = serde_json::from_str(&body).expect("a video object");
    assert_eq!(video["unknown_words"], words, "{video}");

    // Created through the Videos API: an object colour as the background.
    let headers = [("Content-Type", "application/json")];
    let create = r#"{"prompt": "a white ball falls on a blue background"}"#;
    let (status, body) = http_request("POST", &format!("{api}/videos"), &headers, create);
    assert_eq!(status, 200, "{body}");
    let video: Value = serde_json::from_str(&body).expect("a video object");
    assert_eq!(
        video["unknown_words"],
        json!(["blue background"]),
        "{video}"
    );

    // A caption of the world: no note, nothing kept.
    let (id, note) = submit(
        ep,
        "a big yellow square drifts to the right on a gray background",
    );
    assert_eq!(note, None);
    assert_eq!(get_json(ep, &id).get("unknown_words"), None);
    let (status, body) = http_request("GET", &format!("{api}/videos/{id}"), &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""unknown_words":[]"#), "{body}");

    // A known scene with one word the world lacks.
    let (_, note) = submit(ep, "a small red circle spinning on a navy background");
    let note = note.expect("a note on the unknown word");
    assert!(
        note.contains(r#"does not know "spinning" and will not show it"#),
        "{note}"
    );

    // Nothing the world knows: accepted, and said plainly.
    let (id, note) = submit(ep, "a cat playing the piano");
    let note = note.expect("a note on a prompt the model cannot show");
    assert!(
        note.contains(r#""cat", "playing", "piano", and the prompt names nothing else it knows"#),
        "{note}"
    );
    assert!(note.contains(BACKGROUNDS), "{note}");
    assert_eq!(get_json(ep, &id)["state"], "JOB_STATE_PENDING");
    // The README's example is what submit prints.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ genfleet submit --prompt"));
    let command = lines.next().expect("the README shows a submit with a note");
    let prompt = command
        .split('"')
        .nth(1)
        .expect("the README's submit has a quoted prompt");
    let (_, note) = submit(ep, prompt);
    assert_eq!(
        note.as_deref(),
        lines.next(),
        "the README's note is out of date"
    );
}

#[test]
fn model_list_prints_the_world_models_vocabulary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let models = models.to_string_lossy().to_string();
    let (ok, wide, err) = cli(&["model", "list", "--dir", &models, "-o", "wide"]);
    assert!(ok, "{err}");
    assert!(
        wide.contains("backgrounds: black (dark), navy (dark blue)"),
        "{wide}"
    );
    assert!(wide.contains("colours:"), "{wide}");
    let (ok, out, err) = cli(&["model", "list", "--dir", &models, "-o", "json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    let items = list["items"].as_array().expect("items");
    let world = items.iter().find(|m| m["name"] == "world").expect("world");
    assert_eq!(
        world["vocabulary"]["shapes"][0],
        json!(["circle", "ball", "disc", "dot"])
    );
    let tiny = items.iter().find(|m| m["name"] == "tiny").expect("tiny");
    assert_eq!(
        tiny.get("vocabulary"),
        None,
        "a seeded preset hashes every word"
    );
}
