//! Reading verified claims: dot paths, scopes and roles. A value of an unexpected type counts as
//! absent, never as an error.

use serde_json::{Map, Value};

/// Looks up a dot path such as `realm_access.roles`.
pub fn claim_path<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// The strings in a claim that lists things: an array of strings (other elements ignored) or one
/// space-delimited string.
pub fn string_list(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => s.split_ascii_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Granted scopes: `scope` (RFC 8693/9068, space-delimited) and `scp` (array or string).
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = string_list(claims.get("scope"));
    out.extend(string_list(claims.get("scp")));
    out
}

/// Renders a claim as a header value: strings as is, numbers and booleans as text, arrays of
/// scalars joined with `,`, objects as JSON. Values with control characters are dropped.
pub fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Value::Object(_) => v.to_string(),
        Value::Null => return None,
    };
    (!text.chars().any(char::is_control) && text.len() <= 8192).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claim_paths_walk_objects() {
        let c = obj(json!({"realm_access":{"roles":["a","b"]},"sub":"x"}));
        assert_eq!(claim_path(&c, "realm_access.roles"), Some(&json!(["a", "b"])));
        assert_eq!(claim_path(&c, "sub.x"), None);
        assert_eq!(claim_path(&c, "nope"), None);
    }

    #[test]
    fn scopes_come_from_scope_and_scp_and_ignore_wrong_types() {
        assert_eq!(scopes(&obj(json!({"scope": "a  b"}))), ["a", "b"]);
        assert_eq!(scopes(&obj(json!({"scp": ["a", 1, "c"]}))), ["a", "c"]);
        assert_eq!(scopes(&obj(json!({"scope": {"x": 1}, "scp": 7}))), Vec::<&str>::new());
    }
}
