//! Reading verified claims: dot paths, scopes and roles. A value of an unexpected type counts as
//! absent, never as an error.

use serde_json::{Map, Value};

/// The top-level claim a claim path reads (`realm_access` of `realm_access.roles`): what a cached
/// token must keep for [`claim_path`] to find the value.
pub fn top_level(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// The claims that grant scopes: `scope` (RFC 8693/9068, space-delimited) and `scp` (array or
/// string).
pub const SCOPE_CLAIMS: [&str; 2] = ["scope", "scp"];

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

/// Granted scopes: the strings of every [`SCOPE_CLAIMS`] member.
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    SCOPE_CLAIMS
        .iter()
        .flat_map(|name| string_list(claims.get(*name)))
        .collect()
}

/// Renders a claim as a header value: strings as is, numbers and booleans as text, arrays of
/// scalars joined with `,`, objects as JSON. A value that cannot be sent faithfully is not sent
/// (the identity header is then removed, as for an absent claim): one with control characters,
/// longer than 8 KiB, or an array with a string that holds `,` — `["admin,user"]` would read as
/// `["admin","user"]` to an upstream that splits the list.
pub fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.contains(',') => Some(s.clone()),
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

    #[test]
    fn a_list_whose_elements_hold_the_separator_is_not_sent() {
        assert_eq!(header_value(&json!(["admin", "user"])).as_deref(), Some("admin,user"));
        assert_eq!(header_value(&json!(["admin,user"])), None, "would read as two roles");
        assert_eq!(header_value(&json!(["a", "b,c"])), None);
        assert_eq!(header_value(&json!([1, true, "x"])).as_deref(), Some("1,true,x"));
        // One string is sent as the token has it: there is no list to misread.
        assert_eq!(header_value(&json!("admin,user")).as_deref(), Some("admin,user"));
        assert_eq!(header_value(&json!("line\nbreak")), None);
    }
}
