//! Which nodes a worker credential may register: one node, the nodes whose
//! names start with a prefix, or any node (one Secret mounted by every pod
//! of a DaemonSet).

use std::fmt;

/// A worker credential's node binding, written `gpu-07`, `gpu-*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodePattern {
    Any,
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node pattern {pattern:?}: {why}")]
pub struct BadNodePattern {
    pub pattern: String,
    pub why: &'static str,
}

impl NodePattern {
    /// Reads `gpu-07`, `gpu-*` or `*`; the name part follows the rules of
    /// node names (`a-z`, `0-9`, `-`, `_`, `.`, at most 63).
    pub fn parse(text: &str) -> Result<Self, BadNodePattern> {
        let bad = |why| BadNodePattern {
            pattern: text.chars().take(80).collect(),
            why,
        };
        if text == "*" {
            return Ok(Self::Any);
        }
        let (name, prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if name.is_empty() {
            return Err(bad("give a node name, a prefix ending in `*`, or `*`"));
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
        if name.len() > genfleet_proto::MAX_NAME_LEN || !name.bytes().all(allowed) {
            return Err(bad(
                "a node name has 1 to 63 of a-z, 0-9, '-', '_', '.', and `*` may only end it",
            ));
        }
        Ok(if prefix {
            Self::Prefix(name.to_string())
        } else {
            Self::Exact(name.to_string())
        })
    }

    pub fn matches(&self, node: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => node.starts_with(prefix.as_str()),
            Self::Exact(name) => node == name,
        }
    }
}

impl fmt::Display for NodePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Exact(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_written() {
        let table = [
            ("*", "gpu-07", true),
            ("gpu-*", "gpu-07", true),
            ("gpu-*", "cpu-01", false),
            ("gpu-07", "gpu-07", true),
            ("gpu-07", "gpu-070", false),
            ("gpu-0*", "gpu-0", true),
        ];
        for (pattern, node, expected) in table {
            let parsed = NodePattern::parse(pattern).expect(pattern);
            assert_eq!(parsed.matches(node), expected, "{pattern} vs {node}");
            assert_eq!(parsed.to_string(), pattern, "round trip");
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in ["", "**", "g*u", "GPU", "a b", &"x".repeat(64), "*gpu"] {
            let refused = NodePattern::parse(bad).expect_err(bad);
            assert!(refused.to_string().contains("node pattern"), "{refused}");
        }
    }
}
