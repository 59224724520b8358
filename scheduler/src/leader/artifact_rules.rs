//! Where a job's files may be: a worker's result, preview and checkpoint
//! URIs must name files directly under `<store root>/<job id>/`, so a
//! worker cannot hand one job another job's files (another tenant's video)
//! and content serving reads nothing else.

/// The store root that workers' URIs must start with, when it is known.
#[derive(Debug, Clone, Default)]
pub struct ArtifactRules {
    /// Without a trailing `/`.
    root: Option<String>,
}

/// Schemes of the stores workers write to (worker/src/artifacts.rs).
const SCHEMES: [&str; 2] = ["file://", "s3://"];

impl ArtifactRules {
    /// Rules for the store at `root` (`file:///...`, `s3://bucket/prefix`);
    /// `None`: any root of a known scheme, still under the job's own folder.
    pub fn new(root: Option<String>) -> Self {
        Self {
            root: root.map(|r| r.trim_end_matches('/').to_string()),
        }
    }

    /// Why `uri` is not one of job `job_id`'s files, if it is not.
    pub fn refusal(&self, job_id: &str, uri: &str) -> Option<String> {
        let ok = match &self.root {
            Some(root) => file_of_job(root, job_id, uri).is_some(),
            None => {
                let root = uri
                    .rsplit_once('/')
                    .and_then(|(folder, _)| folder.rsplit_once('/'))
                    .map(|(root, _)| root)
                    .unwrap_or_default();
                SCHEMES.iter().any(|s| root.starts_with(s))
                    && !root.split('/').any(|segment| segment == "..")
                    && file_of_job(root, job_id, uri).is_some()
            }
        };
        (!ok).then(|| {
            let clipped: String = uri.chars().take(120).collect();
            let place = match &self.root {
                Some(root) => format!("{root}/{job_id}/<file>"),
                None => format!("<store>/{job_id}/<file>"),
            };
            format!("{clipped:?} is not a file of this job (files go to {place})")
        })
    }
}

/// The file name of job `job_id`'s `uri` in the store at `root`: `uri`
/// must be `<root>/<job_id>/<name>`, `name` one plain path segment.
pub fn file_of_job<'a>(root: &str, job_id: &str, uri: &'a str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let name = uri
        .strip_prefix(root)?
        .strip_prefix('/')?
        .strip_prefix(job_id)?
        .strip_prefix('/')?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    let ok = !job_id.is_empty()
        && !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(plain);
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_owns_only_the_files_in_its_folder() {
        let rules = ArtifactRules::new(Some("file:///data/artifacts/".into()));
        assert_eq!(
            rules.refusal("j-b", "file:///data/artifacts/j-b/video.mp4"),
            None
        );
        for bad in [
            "file:///data/artifacts/j-a/video.mp4",
            "file:///data/artifacts/j-b/../j-a/video.mp4",
            "file:///data/artifacts/j-b/sub/video.mp4",
            "file:///data/artifacts/j-b/",
            "file:///elsewhere/j-b/video.mp4",
            "s3://bucket/j-b/video.mp4",
            "file:///data/artifacts/j-bb/video.mp4",
            "file:///data/artifacts/j-b/video.mp4?x=1",
        ] {
            let why = rules.refusal("j-b", bad).expect(bad);
            assert!(why.contains("not a file of this job"), "{why}");
        }
    }

    #[test]
    fn without_a_configured_store_the_job_folder_still_binds() {
        let rules = ArtifactRules::new(None);
        assert_eq!(rules.refusal("j-b", "s3://bucket/p/j-b/video.mp4"), None);
        assert_eq!(
            rules.refusal("j-b", "file:///x/j-b/checkpoint-3.safetensors"),
            None
        );
        for bad in [
            "s3://bucket/p/j-a/video.mp4",
            "file:///x/../j-b/video.mp4",
            "http://evil/j-b/video.mp4",
            "j-b/video.mp4",
            "",
        ] {
            assert!(rules.refusal("j-b", bad).is_some(), "{bad}");
        }
    }
}
