//! Request bodies (JSON) parsed into typed requests, with errors an operator can act on: the JSON
//! path of the bad key, the value, what is wrong and the fix, never a parser's column alone. Pure.

use crate::core::config::ConfigError;
use serde::de::DeserializeOwned;

/// Parses `body` as `T`, or says exactly where and how it is wrong.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ConfigError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError {
            key: "(body)".into(),
            value: String::new(),
            problem: "is empty".into(),
            fix: "send one JSON object (Content-Type: application/json)".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| explain(e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| explain(String::new(), &e))?;
    Ok(value)
}

fn explain(path: String, inner: &serde_json::Error) -> ConfigError {
    let at = |field: &str| {
        if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let message = inner.to_string();
    // serde_json appends " at line L column C"; keep it only for syntax errors, where it helps.
    let bare = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => &message,
    };
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => ConfigError {
            key: "(body)".into(),
            value: String::new(),
            problem: format!(
                "is not valid JSON: {bare} (line {}, column {})",
                inner.line(),
                inner.column()
            ),
            fix: "send one JSON object; remove trailing commas and placeholders such as '...'"
                .into(),
        },
        serde_json::error::Category::Io => ConfigError {
            key: "(body)".into(),
            value: String::new(),
            problem: format!("could not be read: {bare}"),
            fix: "send the whole body".into(),
        },
        serde_json::error::Category::Data => {
            if let Some(field) = between(bare, "missing field `", "`") {
                ConfigError {
                    key: at(field),
                    value: String::new(),
                    problem: "is missing".into(),
                    fix: format!("add \"{field}\""),
                }
            } else if let Some(field) = between(bare, "unknown field `", "`") {
                // The path already ends with the unknown key; an empty key (`{"": 1}`) is
                // written `""`, so that the error still names one.
                let key = if field.is_empty() {
                    match path.trim_end_matches('.') {
                        "" => "\"\"".to_string(),
                        parent => format!("{parent}.\"\""),
                    }
                } else if path.is_empty() || path == "." {
                    echo(field)
                } else {
                    echo(&path)
                };
                let known = bare
                    .split_once("expected ")
                    .map(|(_, list)| list.replace('`', "").replace("one of ", ""))
                    .unwrap_or_default();
                ConfigError {
                    key,
                    value: String::new(),
                    problem: "is not a known key".into(),
                    fix: if known.is_empty() {
                        "remove it".into()
                    } else {
                        format!("remove it; known keys here: {known}")
                    },
                }
            } else if let Some(rest) = bare.strip_prefix("invalid type: ") {
                let (got, expected) = rest
                    .split_once(", expected ")
                    .unwrap_or((rest, "another type"));
                let expected = json_kind(expected);
                ConfigError {
                    key: if path.is_empty() {
                        "(body)".into()
                    } else {
                        path.clone()
                    },
                    value: String::new(),
                    problem: format!("is {}, not {expected}", echo(&got.replace('`', "'"))),
                    fix: format!("write {expected}"),
                }
            } else {
                ConfigError {
                    key: if path.is_empty() || path == "." {
                        "(body)".into()
                    } else {
                        path.clone()
                    },
                    value: String::new(),
                    problem: echo(bare),
                    fix: "correct the value as described".into(),
                }
            }
        }
    }
}

/// serde's name for what was expected, in JSON's words.
fn json_kind(expected: &str) -> String {
    match expected {
        "a sequence" => "a list (a JSON array, e.g. [\"2001:db8::1\"])".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a string (in double quotes)".into(),
        e if e.starts_with("struct ") || e == "a map" => "an object ({...})".into(),
        e if e.starts_with('u') || e.starts_with('i') => "a number".into(),
        e => e.to_string(),
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

pub(crate) use crate::core::config::echo;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        cluster: Inner,
        #[serde(default)]
        node: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        #[serde(default)]
        nodes: Vec<String>,
    }

    #[test]
    fn errors_name_the_path_the_value_and_the_fix() {
        let table: &[(&str, &str, &str, &str)] = &[
            (
                r#"{"cluster":{}}"#,
                "cluster.name",
                "is missing",
                "add \"name\"",
            ),
            (
                r#"{"cluster":{"name":"c","colour":"red"}}"#,
                "cluster.colour",
                "not a known key",
                "name or nodes",
            ),
            (
                r#"{"cluster":{"name":5}}"#,
                "cluster.name",
                "is integer '5', not a string",
                "write a string",
            ),
            (
                r#"{"cluster":{"name":"c","nodes":"2001:db8::1"}}"#,
                "cluster.nodes",
                "is string \"2001:db8::1\", not a list",
                "write a list (a JSON array",
            ),
            (
                r#"{"cluster":{"name":"c"},}"#,
                "(body)",
                "trailing comma",
                "trailing commas",
            ),
            (
                r#"{"cluster":{"name":"c"}, ...}"#,
                "(body)",
                "line 1",
                "'...'",
            ),
            (
                r#"{"cluster":{"name":"c"}} {}"#,
                "(body)",
                "trailing characters",
                "one JSON object",
            ),
            ("", "(body)", "is empty", "one JSON object"),
            // Found by fuzz/ (bootstrap_body, admin_body): an empty key gave an error without one.
            (r#"{"":1}"#, "\"\"", "not a known key", "cluster or node"),
            (
                r#"{"","cluster":{}}"#,
                "\"\"",
                "not a known key",
                "remove it",
            ),
            (
                r#"{"cluster":{"name":"c","":1}}"#,
                "cluster.\"\"",
                "not a known key",
                "name or nodes",
            ),
            ("{", "(body)", "EOF while parsing", "one JSON object"),
        ];
        for (body, key, problem, fix) in table {
            let e = parse::<Outer>(body.as_bytes()).expect_err(body);
            assert_eq!(e.key, *key, "{body}: {e:?}");
            assert!(e.problem.contains(problem), "{body}: {e:?}");
            assert!(e.fix.contains(fix), "{body}: {e:?}");
            assert!(!e.problem.contains("column 0"), "{body}: {e:?}");
        }
    }

    #[test]
    fn huge_values_are_not_echoed_whole() {
        let big = "x".repeat(10_000_000);
        let shown = echo(&big);
        assert!(shown.len() < 200, "{}", shown.len());
        assert!(shown.contains("10000000 bytes"));
    }
}
