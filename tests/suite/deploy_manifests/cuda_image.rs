//! The `cuda` image (deploy/Dockerfile), as far as a machine without Docker
//! and without a GPU can check it: its target builds with the `cuda`
//! feature through the same script as every GPU build, ships the CUDA
//! libraries of .ci/cuda-runtime-libraries.txt, and that list is what the
//! GPU binary needs (where one has been built here with .ci/build-gpu.sh);
//! the NVIDIA workers run it and only it asks for GPUs.

use std::path::Path;
use std::process::Command;

use super::objects::{gpu_requests, image_name, CPU_IMAGE, NVIDIA};
use super::tools::{kubectl, read_repo_file};
use super::{overlay_objects, ROOT};

/// The lines of the Dockerfile stage named `stage` (FROM ... AS stage).
fn stage<'a>(dockerfile: &'a str, stage: &str) -> Vec<&'a str> {
    let mut lines = dockerfile.lines().skip_while(|l| {
        !(l.starts_with("FROM ") && l.trim_end().ends_with(&format!(" AS {stage}")))
    });
    let Some(from) = lines.next() else {
        panic!("deploy/Dockerfile has no stage {stage}")
    };
    std::iter::once(from)
        .chain(lines.take_while(|l| !l.starts_with("FROM ")))
        .collect()
}

#[test]
fn the_cuda_target_builds_with_the_cuda_feature_and_ships_its_libraries() {
    let dockerfile = read_repo_file("deploy/Dockerfile");
    let build = stage(&dockerfile, "build-cuda").join("\n");
    assert!(
        build.contains("bash .ci/build-gpu.sh"),
        "the cuda image must build as .ci/build-gpu.sh does"
    );
    assert!(
        build.contains(".ci/cuda-runtime-libraries.sh copy"),
        "the cuda image must copy the listed CUDA libraries (checked against the binary)"
    );
    assert!(
        read_repo_file(".ci/build-gpu.sh").contains("--features cuda"),
        ".ci/build-gpu.sh no longer builds the cuda feature"
    );
    let image = stage(&dockerfile, "cuda").join("\n");
    assert!(
        image.contains("COPY --from=build-cuda /out/cuda/") && image.contains("ldconfig"),
        "the cuda image must put the copied libraries on the loader's path"
    );
    // The CPU image is the default target: the last stage, which copies the
    // CPU build.
    let last = dockerfile
        .rsplit("\nFROM ")
        .next()
        .expect("deploy/Dockerfile has stages");
    assert!(
        last.contains("COPY --from=build /out/genfleet"),
        "the default (last) stage must be the CPU image"
    );
    // The image build context keeps .ci/ (deploy/Dockerfile.dockerignore).
    let ignored = read_repo_file("deploy/Dockerfile.dockerignore");
    assert!(
        !ignored
            .lines()
            .any(|l| l.trim() == ".ci" || l.trim() == ".ci/"),
        "the image build needs .ci/"
    );
}

/// Where a GPU build is here (.ci/build-gpu.sh), the list is what it needs;
/// elsewhere there is nothing to compare (a cold GPU build takes ~40 min,
/// too long for every test run), and the image build runs the same check.
#[test]
fn the_listed_cuda_libraries_are_what_the_gpu_binary_needs() {
    let root = Path::new(ROOT);
    let binary = root.join("target/gpu/release/genfleet");
    if !binary.is_file() || !root.join("target/cuda-toolchain/venv/bin/python").is_file() {
        eprintln!(
            "no GPU build in target/gpu: the library list is checked by .ci/build-gpu.sh and the image build"
        );
        return;
    }
    let out = Command::new("bash")
        .arg(root.join(".ci/cuda-runtime-libraries.sh"))
        .arg("check")
        .arg(&binary)
        .output()
        .expect("run .ci/cuda-runtime-libraries.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn only_the_cuda_image_asks_for_gpus() {
    let Some(kubectl) = kubectl() else { return };
    for overlay in ["nvidia", "amd"] {
        for o in overlay_objects(&kubectl, overlay)
            .iter()
            .filter(|o| o["spec"]["template"]["spec"].is_object())
        {
            let pod = &o["spec"]["template"]["spec"];
            let containers = pod["containers"].as_array().into_iter().flatten();
            let inits = pod["initContainers"].as_array().into_iter().flatten();
            for c in containers.chain(inits) {
                let what = format!(
                    "overlays/{overlay}: {} {}/{}",
                    o["kind"], o["metadata"]["name"], c["name"]
                );
                if image_name(c) == CPU_IMAGE {
                    assert!(
                        gpu_requests(c).is_empty(),
                        "{what}: the CPU image asks for GPUs"
                    );
                }
                if !gpu_requests(c).is_empty() {
                    assert_eq!(image_name(c), NVIDIA.image, "{what}");
                }
            }
        }
    }
}
