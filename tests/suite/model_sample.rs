//! `genfleet model sample` and `genfleet video check`, the two commands a
//! GPU machine's check runs (a GPU latent against the CPU's, a video read
//! back frame by frame), tried here on the CPU with the real binary.

use crate::common;

use common::{cli, init_model};

#[test]
fn a_sampled_latent_matches_itself_and_not_another_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let models = models.to_str().expect("utf-8 path");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (latent, video) = (path("cpu.safetensors"), path("cpu.mp4"));
    let request = ["--size", "64x48", "--frames", "9", "--steps", "2"];
    let sample = |extra: &[&str]| {
        let mut args = vec!["model", "sample", "--dir", models, "--device", "cpu"];
        args.extend(request);
        args.extend(extra);
        cli(&args)
    };

    let (ok, out, err) = sample(&["--latent", &latent, "--video", &video]);
    assert!(ok, "{err}");
    assert!(
        out.contains("world on cpu x1 (F32)") && out.contains("2 steps of 64x48x9"),
        "{out}"
    );

    // The same request on the same device: bit-identical.
    let (ok, out, err) = sample(&["--against", &latent]);
    assert!(ok, "{err}");
    assert!(
        out.contains("largest difference 0.000e0") && out.contains("within"),
        "{out}"
    );
    // Split over two and four ranks (sharded weights, summed partials):
    // the same video up to the order of the sums.
    for tp in ["2", "4"] {
        let (ok, out, err) = sample(&["--tp", tp, "--against", &latent]);
        assert!(ok, "tp {tp}: {err}");
        assert!(
            out.contains(&format!("world on cpu x{tp}")) && out.contains("within"),
            "{out}"
        );
    }
    // Another seed is another video: refused, with the numbers.
    let (ok, out, err) = sample(&["--seed", "9", "--against", &latent]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("the latents differ by") && err.contains("more than 1e-3"),
        "{err}"
    );
    // Another size is another request.
    let (ok, _, err) = cli(&[
        "model",
        "sample",
        "--dir",
        models,
        "--size",
        "32x32",
        "--frames",
        "1",
        "--steps",
        "1",
        "--against",
        &latent,
    ]);
    assert!(!ok && err.contains("another request?"), "{err}");

    // The video reads back with every frame decoded.
    let (ok, out, err) = cli(&[
        "video", "check", &video, "--frames", "9", "--size", "64x48", "--fps", "8",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("9 frames at 8 fps, 9 decoded"), "{out}");
    let (ok, _, err) = cli(&[
        "video", "check", &video, "--frames", "17", "--size", "256x256",
    ]);
    assert!(
        !ok && err.contains("it has 9 frames, not 17") && err.contains("not 256x256"),
        "{err}"
    );
    let bytes = std::fs::read(&video).expect("video");
    let cut = path("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let (ok, _, err) = cli(&["video", "check", &cut]);
    assert!(!ok && err.contains("cut.mp4"), "{err}");
}

#[test]
fn bad_sample_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let models = models.to_str().expect("utf-8 path");
    for (flags, expected) in [
        (vec!["--size", "60x48"], "multiples of 16"),
        (vec!["--frames", "0"], "between 1 and 241"),
        (vec!["--steps", "0"], "between 1 and 1000"),
        (vec!["--device", "gpu"], "give cpu, cuda or cuda:N"),
        (vec!["--model", "nope"], "loading model nope"),
        (vec!["--tolerance=-1", "--steps", "1"], "--tolerance"),
    ] {
        let mut args = vec!["model", "sample", "--dir", models];
        args.extend(&flags);
        let (ok, _, err) = cli(&args);
        assert!(!ok && err.contains(expected), "{flags:?}: {err}");
    }
}

/// A build without CUDA says so, for `model sample` and for a worker told
/// to offer only GPUs.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_cpu_build_asked_for_a_gpu_says_it_has_no_cuda() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let models = models.to_str().expect("utf-8 path");
    let (ok, _, err) = cli(&["model", "sample", "--dir", models, "--device", "cuda:0"]);
    assert!(
        !ok && err.contains("built without the `cuda` feature"),
        "{err}"
    );
    let (ok, _, err) = cli(&[
        "worker",
        "--cpu-slots",
        "0",
        "--models",
        models,
        "--scheduler",
        "http://127.0.0.1:1",
    ]);
    assert!(!ok && err.contains("no devices to offer"), "{err}");
}
