//! A response as a flat map from field path to value, for comparing two
//! brokers' answers field by field. The map is read off the response's
//! pretty `Debug` form, which kafka-protocol derives for every message: one
//! field per line, nesting by brackets. Lists of structs are keyed by their
//! identifying field (a topic's name, a partition's index, an API key), so
//! a list in another order or with one more entry shows as that entry, not
//! as every later index changing.

use std::collections::BTreeMap;

/// Fields that identify a list entry, tried in this order.
const KEYS: &[&str] = &[
    "api_key",
    "name",
    "topic",
    "partition_index",
    "partition",
    "group_id",
    "resource_name",
    "config_name",
    "node_id",
    "broker_id",
    "key",
    "coordinator_key",
    "user",
    "mechanism",
];

#[derive(Debug)]
enum Node {
    Leaf(String),
    /// A struct (`Name {`), a list (`[`), or a tuple-like wrapper (`Some(`,
    /// `TopicName(`): its opening bracket and its children, named or not.
    Group(char, Vec<(Option<String>, Node)>),
}

/// `value`'s fields as `path = value`, e.g. `topics[name=t].partitions[partition_index=0].error_code`.
pub fn flatten<T: std::fmt::Debug>(value: &T) -> BTreeMap<String, String> {
    let text = format!("{value:#?}");
    let mut lines = text.lines();
    let root = match lines.next() {
        Some(first) => parse_open(first.trim(), &mut lines),
        None => Node::Leaf(String::new()),
    };
    let mut out = BTreeMap::new();
    walk(&root, "", &mut out);
    out
}

fn opens(line: &str) -> bool {
    line.ends_with('{') || line.ends_with('[') || line.ends_with('(')
}

fn closes(line: &str) -> bool {
    matches!(line.trim_end_matches(','), "}" | "]" | ")")
}

/// Parses the children of a group whose opening line was `first`.
fn parse_open<'a>(first: &str, lines: &mut impl Iterator<Item = &'a str>) -> Node {
    if !opens(first) {
        return Node::Leaf(first.trim_end_matches(',').to_string());
    }
    let bracket = first.chars().last().unwrap_or('{');
    let mut children = Vec::new();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        if closes(line) {
            break;
        }
        let (name, rest) = split_name(line);
        let child = if opens(rest) {
            parse_open(rest, lines)
        } else {
            Node::Leaf(rest.trim_end_matches(',').to_string())
        };
        children.push((name, child));
    }
    Node::Group(bracket, children)
}

/// `field: value` into its name and value; a list element or a wrapper's
/// content has no name.
fn split_name(line: &str) -> (Option<String>, &str) {
    match line.split_once(": ") {
        Some((name, rest)) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            (Some(name.to_string()), rest)
        }
        _ => (None, line),
    }
}

/// A group with one unnamed child (`Some(x)`, `TopicName("t")`) reads as that child.
fn unwrap(node: &Node) -> &Node {
    match node {
        Node::Group('(', children) if children.len() == 1 && children[0].0.is_none() => unwrap(&children[0].1),
        _ => node,
    }
}

/// The identifying field of a list entry, as `field=value`.
fn key_of(node: &Node) -> Option<String> {
    let Node::Group(_, children) = unwrap(node) else {
        return None;
    };
    KEYS.iter().find_map(|k| {
        children
            .iter()
            .find_map(|(name, child)| match (name.as_deref(), unwrap(child)) {
                (Some(n), Node::Leaf(v)) if n == *k => Some(format!("{k}={}", v.trim_matches('"'))),
                _ => None,
            })
    })
}

fn walk(node: &Node, path: &str, out: &mut BTreeMap<String, String>) {
    match unwrap(node) {
        Node::Leaf(v) => {
            out.insert(path.to_string(), v.clone());
        }
        Node::Group(_, children) if children.is_empty() => {
            out.insert(path.to_string(), "[]".to_string());
        }
        Node::Group(bracket, children) => {
            // A list is keyed by its entries' identifying field only when
            // every entry has one and no two share it (else by position).
            let keys: Option<Vec<String>> = if *bracket == '[' {
                children.iter().map(|(_, c)| key_of(c)).collect()
            } else {
                None
            };
            let keys = keys.filter(|ks| ks.iter().collect::<std::collections::BTreeSet<_>>().len() == ks.len());
            for (i, (name, child)) in children.iter().enumerate() {
                let segment = match name {
                    Some(n) if n == "unknown_tagged_fields" => continue,
                    Some(n) if path.is_empty() => n.clone(),
                    Some(n) => format!("{path}.{n}"),
                    None => match &keys {
                        Some(ks) => format!("{path}[{}]", ks[i]),
                        None => format!("{path}[{i}]"),
                    },
                };
                walk(child, &segment, out);
            }
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fields are read through Debug only.
    #[allow(dead_code)]
    #[derive(Debug)]
    struct Part {
        partition_index: i32,
        error_code: i16,
    }
    #[allow(dead_code)]
    #[derive(Debug)]
    struct Topic {
        name: Option<String>,
        partitions: Vec<Part>,
    }
    #[allow(dead_code)]
    #[derive(Debug)]
    struct Resp {
        throttle_time_ms: i32,
        topics: Vec<Topic>,
        empty: Vec<i32>,
        numbers: Vec<i32>,
        one: Vec<Part>,
        twice: Vec<Part>,
    }

    #[test]
    fn lists_are_keyed_and_wrappers_unwrapped() {
        let r = Resp {
            throttle_time_ms: 0,
            topics: vec![Topic {
                name: Some("t{[".into()),
                partitions: vec![
                    Part {
                        partition_index: 1,
                        error_code: 3,
                    },
                    Part {
                        partition_index: 0,
                        error_code: 0,
                    },
                ],
            }],
            empty: vec![],
            numbers: vec![7, 8],
            one: vec![Part {
                partition_index: 4,
                error_code: 1,
            }],
            twice: vec![
                Part {
                    partition_index: 2,
                    error_code: 1,
                },
                Part {
                    partition_index: 2,
                    error_code: 5,
                },
            ],
        };
        let flat = flatten(&r);
        let want: BTreeMap<String, String> = [
            ("throttle_time_ms", "0"),
            ("topics[name=t{[].name", "\"t{[\""),
            ("topics[name=t{[].partitions[partition_index=1].partition_index", "1"),
            ("topics[name=t{[].partitions[partition_index=1].error_code", "3"),
            ("topics[name=t{[].partitions[partition_index=0].partition_index", "0"),
            ("topics[name=t{[].partitions[partition_index=0].error_code", "0"),
            ("empty", "[]"),
            ("numbers[0]", "7"),
            ("numbers[1]", "8"),
            ("one[partition_index=4].partition_index", "4"),
            ("one[partition_index=4].error_code", "1"),
            ("twice[0].partition_index", "2"),
            ("twice[0].error_code", "1"),
            ("twice[1].partition_index", "2"),
            ("twice[1].error_code", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(flat, want);
    }

    #[test]
    fn glob_matches() {
        assert!(glob("*", "anything"));
        assert!(glob("*.throttle_time_ms", "a.b.throttle_time_ms"));
        assert!(glob("topics[*].topic_id", "topics[name=x].topic_id"));
        assert!(!glob("topics[*].topic_id", "topics[name=x].error_code"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
    }
}
