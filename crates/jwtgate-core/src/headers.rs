//! A checked request's headers as the gate reads them: names lower-case, a repeated header's
//! values joined with `,` (RFC 9110 §5.3), or with `; ` for `cookie` (RFC 9113 §8.2.3: HTTP/2
//! sends each cookie as a header line of its own, a "crumb", and they rejoin as one cookie
//! list). Two forms behind one interface: the map the gRPC door
//! is handed by Envoy (moved in, not copied), and a packed form the HTTP door builds from its
//! `HeaderMap` in two allocations (one buffer for every name and value, one index), where a map
//! of owned strings took two per header. A check reads a handful of headers from a dozen or so,
//! so a linear scan of the index is as fast as hashing the name.

use std::collections::HashMap;
use std::ops::Range;

/// A request's headers: lower-case names, repeated values joined with `,`.
#[derive(Debug, Clone)]
pub struct Headers(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// Names to values, as a door was handed them.
    Map(HashMap<String, String>),
    /// Every name and value in `text`, each entry's byte ranges in `entries` (in arrival order,
    /// names unique).
    Packed { text: String, entries: Vec<Entry> },
}

/// Where one header's name and value lie in the packed text.
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: (u32, u32),
    value: (u32, u32),
    /// Sent on more than one line (the value is the lines joined).
    repeated: bool,
}

/// How often a header was sent: what a header that must be sent once (an original request's
/// URI, a client's address or certificate) needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent<'h> {
    /// Not at all.
    No,
    /// On one line, with this value.
    Once(&'h str),
    /// On several lines (in the map form Envoy hands over, repeats arrive already joined and
    /// read as [`Sent::Once`]).
    Repeated,
}

/// What joins a repeated header's values: `; ` for `cookie` (RFC 9113 §8.2.3), else `,`.
fn separator(name: &str) -> &'static str {
    if name == "cookie" { "; " } else { "," }
}

impl Entry {
    fn range(span: (u32, u32)) -> Range<usize> {
        span.0 as usize..span.1 as usize
    }

    /// Whether this entry's name in `text` is `name`, compared as bytes (no char-boundary
    /// checks: every lookup of every check compares a dozen names).
    fn is(&self, text: &str, name: &str) -> bool {
        text.as_bytes().get(Self::range(self.name)) == Some(name.as_bytes())
    }
}

impl Default for Headers {
    fn default() -> Self {
        Self(Repr::Map(HashMap::new()))
    }
}

impl Headers {
    /// An empty packed set with room for `headers` entries and `bytes` of names and values.
    pub fn with_capacity(headers: usize, bytes: usize) -> Self {
        Self(Repr::Packed {
            text: String::with_capacity(bytes),
            entries: Vec::with_capacity(headers),
        })
    }

    /// Adds a header whose `name` is already lower-case. A name equal to the previous one
    /// (repeated headers arrive together, as `http::HeaderMap` yields them) extends its value
    /// with `,value` (`; value` for `cookie`); a name seen earlier but not just before is joined
    /// the same way, dearer.
    pub fn append(&mut self, name: &str, value: &str) {
        if let Repr::Packed { text, entries } = &mut self.0 {
            match entries.iter().rposition(|e| e.is(text, name)) {
                None => {
                    let start = offset(text);
                    text.push_str(name);
                    let name_end = offset(text);
                    text.push_str(value);
                    entries.push(Entry {
                        name: (start, name_end),
                        value: (name_end, offset(text)),
                        repeated: false,
                    });
                    return;
                }
                Some(i) if i + 1 == entries.len() => {
                    text.push_str(separator(name));
                    text.push_str(value);
                    entries[i].value.1 = offset(text);
                    entries[i].repeated = true;
                    return;
                }
                // Seen before, not just before: joined in the map form, below.
                Some(_) => {}
            }
        }
        self.map_mut()
            .entry(name.to_owned())
            .and_modify(|v| {
                v.push_str(separator(name));
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }

    /// Sets `name` (lower-case) to `value`, replacing any value it had.
    pub fn insert(&mut self, name: String, value: String) {
        self.map_mut().insert(name, value);
    }

    /// Removes `name` (lower-case); its value, if it was sent.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.map_mut().remove(name)
    }

    /// The value of `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        match &self.0 {
            Repr::Map(map) => map.get(name).map(String::as_str),
            Repr::Packed { text, entries } => entries
                .iter()
                .find(|e| e.is(text, name))
                .map(|e| &text[Entry::range(e.value)]),
        }
    }

    /// Whether `name` (lower-case) was sent.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Of `names` (lower-case), the position of the first — by position in `names`, not by
    /// arrival — that was sent and that `counts`: one pass over the headers, where asking for
    /// each name would make one pass per name.
    pub fn first_sent(&self, names: &[&str], counts: impl Fn(&str) -> bool) -> Option<usize> {
        match &self.0 {
            Repr::Map(map) => names.iter().position(|n| counts(n) && map.contains_key(*n)),
            Repr::Packed { text, entries } => entries
                .iter()
                .filter_map(|e| {
                    let name = text.as_bytes().get(Entry::range(e.name))?;
                    names.iter().position(|n| n.as_bytes() == name && counts(n))
                })
                .min(),
        }
    }

    /// Whether `name` (lower-case) was sent, and on how many lines.
    pub fn sent(&self, name: &str) -> Sent<'_> {
        match &self.0 {
            Repr::Map(map) => map.get(name).map_or(Sent::No, |v| Sent::Once(v)),
            Repr::Packed { text, entries } => match entries.iter().find(|e| e.is(text, name)) {
                None => Sent::No,
                Some(e) if e.repeated => Sent::Repeated,
                Some(e) => Sent::Once(&text[Entry::range(e.value)]),
            },
        }
    }

    /// Every header, as (name, value), in no set order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match &self.0 {
            Repr::Map(map) => Box::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Repr::Packed { text, entries } => Box::new(
                entries
                    .iter()
                    .map(|e| (&text[Entry::range(e.name)], &text[Entry::range(e.value)])),
            ),
        }
    }

    /// How many distinct names.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Map(map) => map.len(),
            Repr::Packed { entries, .. } => entries.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map form, converting a packed set first (edits are rare: tests, `jwtgate check`).
    fn map_mut(&mut self) -> &mut HashMap<String, String> {
        if let Repr::Packed { .. } = self.0 {
            let map = self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            self.0 = Repr::Map(map);
        }
        match &mut self.0 {
            Repr::Map(map) => map,
            Repr::Packed { .. } => unreachable!("converted above"),
        }
    }
}

/// The packed text's length as an index. Headers are bounded far below 4 GiB by every door
/// (hyper's and tonic's limits), so this cannot saturate in practice; if it did, lookups would
/// find nothing rather than wrong bytes.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl From<HashMap<String, String>> for Headers {
    fn from(map: HashMap<String, String>) -> Self {
        Self(Repr::Map(map))
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(Repr::Map(iter.into_iter().collect()))
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Headers {}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::with_capacity(pairs.len(), 64);
        for (k, v) in pairs {
            h.append(k, v);
        }
        h
    }

    #[test]
    fn packed_headers_read_like_the_map_with_repeats_joined() {
        let pairs = [
            ("host", "api.example.com"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("authorization", "Bearer x"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "*/*"),
            ("x-forwarded-for", "10.0.0.2"),
        ];
        let mut map = Headers::default();
        for (k, v) in pairs {
            map.append(k, v);
        }
        let packed = packed(&pairs);
        assert_eq!(packed, map);
        assert_eq!(
            packed.get("cookie"),
            Some("a=1; b=2"),
            "adjacent repeats, as a cookie list"
        );
        assert_eq!(packed.get("x-forwarded-for"), Some("10.0.0.1,10.0.0.2"), "apart");
        assert_eq!(packed.get("authorization"), Some("Bearer x"));
        assert_eq!(packed.get("Authorization"), None, "names are lower-case already");
        assert_eq!(packed.get("dpop"), None);
        assert!(packed.contains("accept") && !packed.contains("acce"));
        assert_eq!(packed.len(), 5);
        // A repeat apart turned the set into the map form, where repeats read as sent once.
        assert_eq!(packed.sent("x-forwarded-for"), Sent::Once("10.0.0.1,10.0.0.2"));
        let adjacent = self::packed(&pairs[..6]);
        assert_eq!(adjacent.sent("authorization"), Sent::Once("Bearer x"));
        assert_eq!(adjacent.sent("cookie"), Sent::Repeated);
        assert_eq!(adjacent.sent("dpop"), Sent::No);
        let wanted = ["dpop", "accept", "cookie", "x-forwarded-for"];
        assert_eq!(
            adjacent.first_sent(&wanted, |_| true),
            Some(1),
            "by position in the list"
        );
        assert_eq!(adjacent.first_sent(&wanted, |n| n != "accept"), Some(2));
        assert_eq!(adjacent.first_sent(&["dpop"], |_| true), None);
        assert_eq!(packed.first_sent(&wanted, |_| true), Some(1), "the map form too");
    }

    #[test]
    fn cookie_crumbs_rejoin_as_one_cookie_list() {
        // HTTP/2 sends each cookie on a line of its own (RFC 9113 §8.2.3): `; ` joins them, so
        // a token cookie after another cookie is still a cookie of its own.
        let crumbs = [("cookie", "theme=dark"), ("cookie", "access_token=t")];
        assert_eq!(packed(&crumbs).get("cookie"), Some("theme=dark; access_token=t"));
        let mut map = Headers::default();
        map.append("cookie", "theme=dark");
        map.append("cookie", "access_token=t");
        assert_eq!(map.get("cookie"), Some("theme=dark; access_token=t"));
    }

    #[test]
    fn a_name_is_not_found_inside_another_or_across_a_boundary() {
        let h = packed(&[("x-a", "bc"), ("x", "-abc"), ("", "empty-name")]);
        assert_eq!(h.get("x-a"), Some("bc"));
        assert_eq!(h.get("x"), Some("-abc"));
        assert_eq!(h.get("x-ab"), None);
        assert_eq!(h.get("bc"), None);
        assert_eq!(h.get(""), Some("empty-name"));
    }

    #[test]
    fn inserting_replaces_removing_removes_and_the_others_stay() {
        let mut h = packed(&[("authorization", "Bearer old"), ("host", "h")]);
        h.insert("authorization".into(), "Bearer new".into());
        assert_eq!(h.get("authorization"), Some("Bearer new"));
        assert_eq!(h.get("host"), Some("h"));
        assert_eq!(h.len(), 2);
        assert_eq!(h.remove("authorization").as_deref(), Some("Bearer new"));
        assert_eq!((h.get("authorization"), h.len()), (None, 1));
    }
}
