//! A real Prometheus server for the monitoring tests, the metric names
//! a PromQL expression or a /metrics text holds, `promtool check metrics`,
//! and (`runbook`) docs/runbook.md as the tests read it.

pub mod runbook;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{http_response, Proc};

/// A Prometheus server on a loopback port, with its data in a temporary
/// directory; killed when dropped.
pub struct Prometheus {
    proc: Proc,
    dir: tempfile::TempDir,
    address: String,
    pub url: String,
}

/// One scrape job: its name, its `host:port` targets, and labels added to
/// every series scraped (as the Prometheus Operator adds `namespace`).
pub struct ScrapeJob {
    pub job: String,
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

impl Prometheus {
    /// Starts `binary` scraping `jobs` every second and evaluating the rule
    /// groups of `rules` every second; waits until it is ready.
    pub fn start(binary: &Path, jobs: &[ScrapeJob], rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for job in jobs {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("'{t}'")).collect();
            let labels: Vec<String> = job
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: '{v}'"))
                .collect();
            config += &format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n        labels: {{{}}}\n",
                job.job,
                targets.join(", "),
                labels.join(", ")
            );
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let address = format!("127.0.0.1:{}", super::replicas::free_port());
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut prometheus = Prometheus {
            proc: Proc {
                child,
                name: "prometheus".into(),
            },
            dir,
            url: format!("http://{address}"),
            address,
        };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Connect first: http_response panics when nothing listens yet.
            let listening = std::net::TcpStream::connect(&self.address).is_ok();
            if listening && http_response(&format!("{}/-/ready", self.url)).0 == 200 {
                return;
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready (its configuration or rule file is bad?):\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready at {} within 30s (port taken? storage not writable?):\n{}",
                self.url,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Prometheus logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The `data` of a successful answer of API `path` (`/api/v1/...?...`),
    /// or the error Prometheus gave.
    pub fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http_response(&format!("{}{path}", self.url));
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        match answer["status"].as_str() {
            Some("success") => Ok(answer["data"].clone()),
            _ => Err(format!(
                "{}: {}",
                answer["errorType"].as_str().unwrap_or("error"),
                answer["error"].as_str().unwrap_or(&body)
            )),
        }
    }

    /// The series an instant query returns now (a scalar counts as one),
    /// or the error Prometheus gave (a parse error, a matching error).
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(match &data["result"] {
            serde_json::Value::Array(series) if data["resultType"] != "scalar" => series.clone(),
            other => vec![other.clone()],
        })
    }

    /// None once Prometheus scrapes `expected` targets, all up; else what
    /// it scrapes and what is wrong.
    pub fn targets_not_up(&self, expected: usize) -> Option<String> {
        let data = match self.api("/api/v1/targets") {
            Ok(data) => data,
            Err(e) => return Some(format!("no targets from Prometheus: {e}")),
        };
        let targets = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let down: Vec<String> = targets
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| {
                format!(
                    "{} {} ({})",
                    t["scrapePool"], t["scrapeUrl"], t["lastError"]
                )
            })
            .collect();
        (targets.len() != expected || !down.is_empty()).then(|| {
            format!(
                "Prometheus should scrape {expected} targets; it has {}, not up: {down:?}",
                targets.len()
            )
        })
    }

    /// None once Prometheus has loaded `expected` rules and evaluated each;
    /// fails at once on a rule whose evaluation failed (a matching error,
    /// say, that only real series show).
    pub fn rules_not_evaluated(&self, expected: usize) -> Option<String> {
        let data = match self.api("/api/v1/rules") {
            Ok(data) => data,
            Err(e) => return Some(format!("no rules from Prometheus: {e}")),
        };
        let rules: Vec<&serde_json::Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let mut pending = Vec::new();
        for rule in &rules {
            match rule["health"].as_str() {
                Some("ok") => {}
                Some("err") => panic!(
                    "Prometheus failed to evaluate rule {}: {}",
                    rule["name"], rule["lastError"]
                ),
                _ => pending.push(rule["name"].to_string()),
            }
        }
        (rules.len() != expected || !pending.is_empty()).then(|| {
            format!(
                "Prometheus loaded {} of {expected} rules; not evaluated yet: {pending:?}\n{}",
                rules.len(),
                self.log()
            )
        })
    }

    /// The alerts pending or firing now, as `Name` or `Name{queue=q}`.
    pub fn active_alerts(&self) -> Result<Vec<String>, String> {
        let data = self.api("/api/v1/alerts")?;
        let alerts = data["alerts"].as_array().into_iter().flatten();
        Ok(alerts
            .map(|a| {
                let labels = &a["labels"];
                let name = labels["alertname"].as_str().unwrap_or("?");
                match labels["queue"].as_str() {
                    Some(queue) => format!("{name}{{queue={queue}}}"),
                    None => name.to_string(),
                }
            })
            .collect())
    }
}

/// Polls until `check` returns None (done); fails with its last message
/// after `secs`.
pub fn poll(secs: u64, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let Some(why) = check() else { return };
        assert!(Instant::now() < deadline, "after {secs}s: {why}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Percent-encodes a query parameter's value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Words of PromQL that are not metric names: operators, and aggregations
/// (which may come before their `by (...)` instead of a parenthesis).
const KEYWORDS: &str = "and or unless bool offset inf nan atan2 \
    sum min max avg group stddev stdvar count count_values bottomk topk quantile";
/// Keywords followed by a list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects: identifiers outside label matchers,
/// strings, ranges and label lists that are not functions or keywords.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    selectors(expr).into_iter().map(|s| s.name).collect()
}

/// A vector selector of a PromQL expression: the metric name and the text
/// between its braces (empty when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub matchers: String,
}

/// The vector selectors of `expr`, in order.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    let skip_to = |i: usize, close: char| {
        let mut j = i;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' {
                j += 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '"' || c == '\'' {
            i = skip_to(i + 1, c);
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (5m, 1e3): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = skip_to(next, ')');
                }
            } else if !called
                && !KEYWORDS
                    .split_whitespace()
                    .any(|k| k == word.to_lowercase())
            {
                let mut matchers = String::new();
                if chars.get(next) == Some(&'{') {
                    i = skip_to(next, '}');
                    let end = i.saturating_sub(1).max(next + 1);
                    matchers = chars[next + 1..end.min(chars.len())].iter().collect();
                }
                found.push(Selector {
                    name: word,
                    matchers,
                });
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The metric names of a Prometheus text exposition: families (`# TYPE`)
/// and series (with a histogram's `_bucket`, `_sum` and `_count`).
pub fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// Fails on anything `promtool check metrics` says of `url`'s /metrics.
pub fn promtool_check_metrics(promtool: &Path, url: &str) {
    let text = super::http_get(url);
    // promtool may answer before reading all of it: a short read is no failure.
    let (status, said, _) = super::pipe(Command::new(promtool).args(["check", "metrics"]), &text);
    assert!(
        status.success() && said.trim().is_empty(),
        "promtool check metrics on {url} ({status}):\n{said}"
    );
}
