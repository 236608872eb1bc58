//! Routes: which policy applies to a request, chosen from its host (see [`crate::host`]),
//! normalised path (see [`crate::path`]), method and Envoy `context_extensions`. First match
//! wins.

use crate::config::routes::{HostMatch, Match, PathMatch, Route, method_holds};
use crate::request::Request;

/// The configured routes in order.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Wraps routes already validated by the config.
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The first route whose conditions all hold for `req`, whose path has been normalised to
    /// `path` (see [`crate::path::normalize`]) and its host to `host` (see
    /// [`crate::host::normalize`]).
    pub fn select(&self, req: &Request, path: &str, host: &str) -> Option<&Route> {
        self.select_index(req, path, host).and_then(|i| self.routes.get(i))
    }

    /// [`RouteTable::select`] as the route's position in the config.
    pub fn select_index(&self, req: &Request, path: &str, host: &str) -> Option<usize> {
        self.routes.iter().position(|r| matches(&r.matcher, req, host, path))
    }

    /// Every route, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

fn matches(m: &Match, req: &Request, host: &str, path: &str) -> bool {
    if !m.methods.is_empty() && !m.methods.iter().any(|x| method_holds(x, &req.method)) {
        return false;
    }
    match &m.host {
        Some(HostMatch::Exact(h)) if h != host => return false,
        Some(HostMatch::Suffix(s)) if !(host.len() > s.len() && host.ends_with(s.as_str())) => return false,
        _ => {}
    }
    if !m.context.iter().all(|(k, v)| req.context.get(k) == Some(v)) {
        return false;
    }
    let lowered;
    let path = if m.case_insensitive {
        lowered = path.to_ascii_lowercase();
        lowered.as_str()
    } else {
        path
    };
    match &m.path {
        None => true,
        Some(PathMatch::Prefix(p)) => crate::path::under(path, p),
        Some(PathMatch::StringPrefix(p)) => path.starts_with(p.as_str()),
        Some(PathMatch::Exact(p)) => path == p,
        Some(PathMatch::Regex(re)) => re.is_match(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::path;

    fn table(routes: &str) -> RouteTable {
        let text =
            format!("providers:\n  - name: corp\n    issuer: https://i/\n    jwks_uri: https://i/k\nroutes:\n{routes}");
        RouteTable::new(
            Config::parse(&text, "t.yaml", std::path::Path::new("."))
                .unwrap()
                .routes,
        )
    }

    fn pick(t: &RouteTable, method: &str, host: &str, path: &str) -> Option<String> {
        let req = Request {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            ..Request::default()
        };
        let normal = path::normalize(path).ok()?;
        let host = crate::host::normalize(host).ok()?;
        t.select(&req, &normal, &host).map(|r| r.name.clone())
    }

    const ROUTES: &str = "  - { name: health, match: { path_prefix: /health }, auth: public }
  - { name: admin, match: { path_prefix: /admin, methods: [POST, DELETE] } }
  - { name: exact, match: { path: /exact } }
  - { name: regex, match: { path_regex: '/items/[0-9]+' } }
  - { name: tenant, match: { host: '*.example.com', path_prefix: / } }
  - { name: one-host, match: { host: api.internal } }
  - { name: ctx, match: { context: { policy: admin } } }
";

    #[test]
    fn first_match_wins_on_path_method_and_host() {
        let t = table(ROUTES);
        assert_eq!(pick(&t, "GET", "x", "/health/live").as_deref(), Some("health"));
        assert_eq!(pick(&t, "POST", "x", "/admin/users").as_deref(), Some("admin"));
        assert_eq!(pick(&t, "post", "x", "/admin").as_deref(), Some("admin"));
        assert_eq!(pick(&t, "GET", "x", "/admin"), None, "method not listed");
        assert_eq!(pick(&t, "HEAD", "x", "/admin"), None, "HEAD is GET's, not POST's");
        assert_eq!(pick(&t, "GET", "x", "/exact").as_deref(), Some("exact"));
        assert_eq!(pick(&t, "GET", "x", "/exact/more"), None);
        assert_eq!(pick(&t, "GET", "x", "/items/42").as_deref(), Some("regex"));
        assert_eq!(pick(&t, "GET", "x", "/items/42/x"), None, "regex is anchored");
        assert_eq!(pick(&t, "GET", "a.example.com:8443", "/z").as_deref(), Some("tenant"));
        assert_eq!(pick(&t, "GET", "A.Example.COM.", "/z").as_deref(), Some("tenant"));
        assert_eq!(pick(&t, "GET", "example.com", "/z"), None, "*.suffix needs a subdomain");
        assert_eq!(pick(&t, "GET", "evilexample.com", "/z"), None);
        assert_eq!(pick(&t, "GET", "api.internal:80", "/q").as_deref(), Some("one-host"));
    }

    #[test]
    fn a_get_route_holds_head_which_applications_answer_with_their_get_handler() {
        let t = table(
            "  - { name: read, match: { path_prefix: /admin, methods: [GET] }, require: { roles: [admin] } }\n  - { name: rest, match: { path_prefix: / }, auth: public }\n",
        );
        assert_eq!(pick(&t, "HEAD", "x", "/admin/secret").as_deref(), Some("read"));
        assert_eq!(pick(&t, "head", "x", "/admin/secret").as_deref(), Some("read"));
        assert_eq!(pick(&t, "OPTIONS", "x", "/admin/secret").as_deref(), Some("rest"));
    }

    #[test]
    fn context_extensions_pick_a_route() {
        let t = table(ROUTES);
        let mut req = Request {
            method: "GET".into(),
            host: "x".into(),
            path: "/q".into(),
            ..Request::default()
        };
        assert_eq!(t.select(&req, "/q", "x").map(|r| r.name.as_str()), None);
        req.context.insert("policy".into(), "admin".into());
        assert_eq!(t.select(&req, "/q", "x").map(|r| r.name.as_str()), Some("ctx"));
    }

    #[test]
    fn bypass_spellings_reach_the_same_route() {
        let t = table(
            "  - { name: admin, match: { path_prefix: /admin } }\n  - { name: rest, match: { path_prefix: / }, auth: public }\n",
        );
        for p in [
            "/admin",
            "/admin/../admin",
            "//admin",
            "/%61dmin",
            "/./admin/x",
            "/x/../admin",
            "/admin?q=/public",
        ] {
            assert_eq!(pick(&t, "GET", "h", p).as_deref(), Some("admin"), "{p}");
        }
        // Paths are case-sensitive unless the route says otherwise.
        assert_eq!(pick(&t, "GET", "h", "/ADMIN").as_deref(), Some("rest"));
        let t = table(
            "  - { name: admin, match: { path_prefix: /admin, case_insensitive: true } }\n  - { name: rest, match: { path_prefix: / }, auth: public }\n",
        );
        assert_eq!(pick(&t, "GET", "h", "/ADMIN").as_deref(), Some("admin"));
        assert_eq!(pick(&t, "GET", "h", "/%41dmin").as_deref(), Some("admin"));
        // Case-insensitive and case-sensitive routes mixed: each sees the path its own way.
        let t = table(
            "  - { name: other, match: { path_prefix: /other, case_insensitive: true } }\n  - { name: exact, match: { path: /Admin } }\n  - { name: admin, match: { path_prefix: /admin, case_insensitive: true } }\n",
        );
        assert_eq!(pick(&t, "GET", "h", "/Admin").as_deref(), Some("exact"));
        assert_eq!(pick(&t, "GET", "h", "/ADMIN/x").as_deref(), Some("admin"));
        assert_eq!(pick(&t, "GET", "h", "/admin").as_deref(), Some("admin"));
    }

    #[test]
    fn a_path_prefix_holds_whole_segments_only() {
        let t = table(
            "  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: health, match: { path_prefix: /health }, auth: public }
  - { name: slash, match: { path_prefix: /docs/ }, auth: public }
  - { name: chars, match: { path_string_prefix: /static }, auth: public }
  - { name: rest, match: { path_prefix: / } }
",
        );
        for (path, route) in [
            ("/public", "public"),
            ("/public/", "public"),
            ("/public/x/y", "public"),
            ("/public?x=1", "public"),
            ("/public-admin", "rest"),
            ("/public-admin/x", "rest"),
            ("/publicity", "rest"),
            ("/health", "health"),
            ("/healthcare/records", "rest"),
            ("/docs/", "slash"),
            ("/docs/a", "slash"),
            ("/docs", "rest"),
            ("/static-files/x", "chars"),
            ("/staticx", "chars"),
            ("/", "rest"),
        ] {
            assert_eq!(pick(&t, "GET", "h", path).as_deref(), Some(route), "{path}");
        }
        let t = table("  - { name: admin, match: { path_prefix: /admin, case_insensitive: true } }\n");
        assert_eq!(pick(&t, "GET", "h", "/ADMIN/x").as_deref(), Some("admin"));
        assert_eq!(pick(&t, "GET", "h", "/ADMINS"), None);
    }
}
