//! The request a proxy asks the HTTP door about, read from the one header family the door's
//! configuration names ([`Family`]), never from whichever family arrives; and the client's
//! address and certificate, from the headers the door names, believed only from its trusted
//! proxies.
//!
//! A proxy *sets* its own family's headers (replacing any client copy) and passes every other
//! header the client sent. So a check request that also carries another family's
//! original-request headers (`X-Original-URI` behind Caddy, `X-Forwarded-Uri` behind nginx), or
//! its own family's on several lines, may describe a request the client chose: it is refused
//! (400, [`Rejection::AmbiguousOriginalRequest`]) and never decided. `X-Forwarded-Host` and
//! `X-Forwarded-Proto`, which load balancers in front of any proxy add, do not count.
//!
//! What each family reads (a trusted peer's, except `envoy`'s own method and path):
//!
//! | family | method | path | host | scheme |
//! |---|---|---|---|---|
//! | `nginx` | `X-Original-Method` | `X-Original-URI` | `X-Original-Host`, else `Host` | `X-Forwarded-Proto` |
//! | `ingress_nginx` | `X-Original-Method` | `X-Original-URL`'s path and query (`X-Original-URI`, which the controller sets only with `auth-method`, is ignored) | its authority | its scheme |
//! | `forwarded` | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Host`, else `Host` | `X-Forwarded-Proto` |
//! | `envoy` | the check request's | below the prefix, with its query | `Host` | `X-Forwarded-Proto` |

use std::net::{IpAddr, SocketAddr};

use crate::binding::{self, ClientCert};
use crate::config::http_auth::{
    ClientCertHeader, ClientIpHeader, Door, Family, ORIGINAL_REQUEST_HEADERS, canonical_ip,
};
use crate::headers::{Headers, Sent};
use crate::rejection::Rejection;
use crate::request::Request;

/// The check request as the HTTP door received it: its own method, its path below an `envoy`
/// door's prefix (empty for other doors) and its query.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The check request's method.
    pub method: &'a str,
    /// Its path after the door's prefix (`envoy` doors).
    pub rest: &'a str,
    /// Its query, if any.
    pub query: Option<&'a str>,
}

/// Fills in `req` (whose `headers` are the check request's) as `door` reads it from `peer`: the
/// method, path, host and scheme of the request being checked, the client's address and
/// certificate, and the proxy's request id. The refusal when the door cannot tell which request
/// it is asked about.
pub fn read(door: &Door, peer: SocketAddr, asked: Asked<'_>, req: &mut Request) -> Result<(), Rejection> {
    let trusted = door.trusts(peer.ip());
    if door.family != Family::Envoy && !trusted {
        return Err(Rejection::OriginalRequestUnknown);
    }
    let headers = &req.headers;
    let foreign = headers.first_sent(&ORIGINAL_REQUEST_HEADERS, |h| !door.family.owns(h));
    if let Some(name) = foreign.and_then(|i| ORIGINAL_REQUEST_HEADERS.get(i)) {
        return Err(Rejection::AmbiguousOriginalRequest(name));
    }
    let once = |name: &'static str| match headers.sent(name) {
        Sent::No => Ok(None),
        Sent::Once(v) => Ok(Some(v)),
        Sent::Repeated => Err(Rejection::AmbiguousOriginalRequest(name)),
    };
    let required = |name: &'static str| once(name)?.ok_or(Rejection::OriginalRequestUnknown);
    let host_or = |name: &'static str| -> Result<&str, Rejection> {
        Ok(once(name)?.or_else(|| headers.get("host")).unwrap_or_default())
    };
    let proto = || -> String {
        if !trusted {
            return String::new();
        }
        headers
            .get("x-forwarded-proto")
            .and_then(|p| p.split(',').next())
            .map(|p| p.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let (method, path, host, scheme) = match door.family {
        Family::Nginx => (
            required("x-original-method")?.to_owned(),
            required("x-original-uri")?.to_owned(),
            host_or("x-original-host")?.to_owned(),
            proto(),
        ),
        Family::Forwarded => (
            required("x-forwarded-method")?.to_owned(),
            required("x-forwarded-uri")?.to_owned(),
            host_or("x-forwarded-host")?.to_owned(),
            proto(),
        ),
        Family::IngressNginx => {
            let method = required("x-original-method")?.to_owned();
            let (scheme, host, path) =
                absolute_url(required("x-original-url")?).ok_or(Rejection::OriginalRequestUnknown)?;
            (method, path, host.to_owned(), scheme.to_ascii_lowercase())
        }
        Family::Envoy => {
            let mut path = if asked.rest.is_empty() {
                "/".to_owned()
            } else {
                asked.rest.to_owned()
            };
            if let Some(q) = asked.query {
                path.push('?');
                path.push_str(q);
            }
            (asked.method.to_owned(), path, host_or("host")?.to_owned(), proto())
        }
    };
    if !is_method(&method) {
        return Err(Rejection::OriginalRequestUnknown);
    }
    let (client_ip, client_cert) = if trusted {
        (client_ip(door, peer, headers), client_cert(door, headers))
    } else {
        (canonical_ip(peer.ip()), None)
    };
    req.request_id = headers.get("x-request-id").map(str::to_owned);
    if !door.context.is_empty() {
        req.context = door.context.iter().cloned().collect();
    }
    req.method = method;
    req.path = path;
    req.host = host;
    req.scheme = scheme;
    req.client_ip = Some(client_ip);
    req.client_cert = client_cert;
    Ok(())
}

/// `scheme://authority/path?query` (ingress-nginx's `$scheme://$http_host$request_uri`) as
/// (scheme, authority, path with query); `None` for anything else. `$request_uri` starts with
/// `/` and nginx refuses a `Host` with `/`, so the path starts at the first `/`: everything
/// before it is the client's `Host`, checked as one (`Host: app.example.com:?` must not move
/// the path into the query).
fn absolute_url(url: &str) -> Option<(&str, &str, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let (authority, path) = rest.split_at(rest.find('/')?);
    Some((scheme, authority, path.to_owned()))
}

/// Whether `method` is an HTTP method token (RFC 9110 §9.1, §5.6.2), as a proxy forwards one.
fn is_method(method: &str) -> bool {
    method.len() <= 32 && crate::config::valid_token(method)
}

/// The client's address, as the door's header says it (the peer is trusted).
fn client_ip(door: &Door, peer: SocketAddr, headers: &Headers) -> IpAddr {
    let peer = canonical_ip(peer.ip());
    match &door.client_ip {
        ClientIpHeader::Peer => peer,
        ClientIpHeader::Single(name) => match headers.sent(name) {
            Sent::Once(v) => v.trim().parse::<IpAddr>().map_or(peer, canonical_ip),
            // Absent, or on several lines (not the one line a proxy overwrote): the proxy's own.
            Sent::No | Sent::Repeated => peer,
        },
        // Repeated `X-Forwarded-For` lines are joined with `,`, as one list (RFC 9110 §5.3).
        ClientIpHeader::ForwardedFor => {
            let mut nearest = peer;
            let hops = headers.get("x-forwarded-for").unwrap_or_default();
            for hop in hops.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
                // Past an entry that is not an address, nothing can be believed: the hop that
                // wrote it.
                let Ok(ip) = hop.parse::<IpAddr>().map(canonical_ip) else {
                    return nearest;
                };
                if !door.trusts(ip) {
                    return ip;
                }
                nearest = ip;
            }
            nearest
        }
    }
}

/// The client certificate from the door's header, sent once and not empty (the peer is
/// trusted); `None` when the door names no header.
fn client_cert(door: &Door, headers: &Headers) -> Option<ClientCert> {
    let (name, xfcc) = match door.client_cert.as_ref()? {
        ClientCertHeader::Xfcc => ("x-forwarded-client-cert", true),
        ClientCertHeader::Encoded(name) => (name.as_str(), false),
    };
    let Sent::Once(value) = headers.sent(name) else {
        return None;
    };
    if value.trim().is_empty() {
        return None;
    }
    if xfcc {
        binding::from_xfcc(value)
    } else {
        Some(ClientCert::Encoded(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn door(http_auth: &str, path: &str) -> Door {
        let text = format!(
            "providers:\n  - name: corp\n    issuer: https://i/\n    jwks_uri: https://i/k\nhttp_auth: {http_auth}\n"
        );
        let c = Config::parse(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        c.http_auth.door(path).unwrap().0.clone()
    }

    const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);

    fn asked(door: &Door, method: &str, rest: &str, headers: &[(&str, &str)]) -> Result<Request, Rejection> {
        let mut h = Headers::with_capacity(headers.len(), 256);
        for (k, v) in headers {
            h.append(k, v);
        }
        let mut req = Request {
            headers: h,
            ..Request::default()
        };
        let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
        read(door, LOOPBACK.into(), Asked { method, rest, query }, &mut req).map(|()| req)
    }

    fn what(r: &Request) -> (&str, &str, &str) {
        (&r.method, &r.path, &r.host)
    }

    #[test]
    fn each_family_reads_its_own_headers_only() {
        let nginx = door("{ original_request: nginx }", "/auth");
        let r = asked(
            &nginx,
            "GET",
            "",
            &[
                ("x-original-method", "POST"),
                ("x-original-uri", "/admin/x?y=1"),
                ("x-original-host", "admin.example.com"),
                ("host", "jwtgate"),
            ],
        )
        .unwrap();
        assert_eq!(what(&r), ("POST", "/admin/x?y=1", "admin.example.com"));

        let forwarded = door("{ original_request: forwarded }", "/auth");
        let r = asked(
            &forwarded,
            "GET",
            "",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/admin"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-proto", "HTTPS"),
            ],
        )
        .unwrap();
        assert_eq!(what(&r), ("DELETE", "/admin", "app.example.com"));
        assert_eq!(r.scheme, "https");

        let ingress = door("{ original_request: ingress_nginx }", "/auth");
        let r = asked(
            &ingress,
            "GET",
            "",
            &[
                ("x-original-url", "https://Admin.example.com:8443/admin/x?q=1"),
                ("x-original-method", "PUT"),
                ("x-forwarded-proto", "http"),
            ],
        )
        .unwrap();
        assert_eq!(what(&r), ("PUT", "/admin/x?q=1", "Admin.example.com:8443"));
        assert_eq!(r.scheme, "https", "the URL's scheme, not a header's");
        // The path starts at the first `/`: what comes before is the client's Host, whole.
        let r = asked(
            &ingress,
            "GET",
            "",
            &[
                ("x-original-url", "http://app.example.com:?/admin/x"),
                ("x-original-method", "GET"),
            ],
        )
        .unwrap();
        assert_eq!(
            what(&r),
            ("GET", "/admin/x", "app.example.com:?"),
            "the gate refuses that host"
        );

        let envoy = door("{ envoy_prefix: /ext_authz }", "/ext_authz/x");
        let r = asked(&envoy, "PATCH", "/admin/x?a=b", &[("host", "api.example.com")]).unwrap();
        assert_eq!(what(&r), ("PATCH", "/admin/x?a=b", "api.example.com"));
        let r = asked(&envoy, "GET", "", &[]).unwrap();
        assert_eq!(r.path, "/");
    }

    #[test]
    fn another_familys_original_request_headers_are_refused_not_decided() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 6] = [
            (
                "{ original_request: forwarded }",
                "x-original-uri",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/admin/secret"),
                    ("x-original-uri", "/public/x"),
                ],
            ),
            (
                "{ original_request: nginx }",
                "x-forwarded-method",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/admin"),
                    ("x-forwarded-uri", "/public"),
                    ("x-forwarded-method", "GET"),
                ],
            ),
            (
                "{ original_request: nginx }",
                "x-original-url",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/admin"),
                    ("x-original-url", "http://h/public"),
                ],
            ),
            (
                "{ original_request: ingress_nginx }",
                "x-forwarded-uri",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-url", "http://h/admin"),
                    ("x-forwarded-uri", "/public"),
                ],
            ),
            (
                "{ original_request: ingress_nginx }",
                "x-original-host",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-url", "http://h/admin"),
                    ("x-original-host", "public"),
                ],
            ),
            (
                "{ original_request: forwarded }",
                "x-original-host",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/admin"),
                    ("x-original-host", "public"),
                ],
            ),
        ];
        for (cfg, foreign, headers) in cases {
            let d = door(cfg, "/auth");
            assert_eq!(
                asked(&d, "GET", "", headers).unwrap_err(),
                Rejection::AmbiguousOriginalRequest(foreign),
                "{cfg} {headers:?}"
            );
        }
        let envoy = door("{ envoy_prefix: /ext_authz }", "/ext_authz");
        assert_eq!(
            asked(&envoy, "GET", "/admin", &[("x-original-uri", "/public")]).unwrap_err(),
            Rejection::AmbiguousOriginalRequest("x-original-uri")
        );
        // Load balancers' X-Forwarded-Host and -Proto are not another family.
        let nginx = door("{ original_request: nginx }", "/auth");
        assert!(
            asked(
                &nginx,
                "GET",
                "",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/"),
                    ("x-forwarded-host", "lb"),
                    ("x-forwarded-proto", "https")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn an_own_header_sent_twice_is_ambiguous_and_a_missing_one_unknown() {
        let d = door("{ original_request: forwarded }", "/auth");
        assert_eq!(
            asked(
                &d,
                "GET",
                "",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/public"),
                    ("x-forwarded-uri", "/admin")
                ]
            )
            .unwrap_err(),
            Rejection::AmbiguousOriginalRequest("x-forwarded-uri")
        );
        assert_eq!(
            asked(&d, "GET", "", &[("x-forwarded-uri", "/admin")]).unwrap_err(),
            Rejection::OriginalRequestUnknown
        );
        let i = door("{ original_request: ingress_nginx }", "/auth");
        for url in ["/admin", "ftp://h/admin", "h/admin", "http://h?q", "http://h"] {
            assert_eq!(
                asked(&i, "GET", "", &[("x-original-method", "GET"), ("x-original-url", url)]).unwrap_err(),
                Rejection::OriginalRequestUnknown,
                "{url}"
            );
        }
    }

    #[test]
    fn a_method_that_is_not_a_method_token_is_no_request() {
        let d = door("{ original_request: forwarded }", "/auth");
        for method in ["", "GET POST", "G\u{202e}ET", "GET\t", &"A".repeat(33)] {
            assert_eq!(
                asked(
                    &d,
                    "GET",
                    "",
                    &[("x-forwarded-method", method), ("x-forwarded-uri", "/")]
                )
                .unwrap_err(),
                Rejection::OriginalRequestUnknown,
                "{method:?}"
            );
        }
        assert!(
            asked(
                &d,
                "GET",
                "",
                &[("x-forwarded-method", "PROPFIND"), ("x-forwarded-uri", "/")]
            )
            .is_ok()
        );
    }

    #[test]
    fn nothing_is_believed_from_a_peer_that_is_not_a_trusted_proxy() {
        let d = door("{ original_request: nginx, trusted_proxies: [10.0.0.1] }", "/auth");
        assert_eq!(
            asked(&d, "GET", "", &[("x-original-method", "GET"), ("x-original-uri", "/")]).unwrap_err(),
            Rejection::OriginalRequestUnknown
        );
        let e = door(
            "{ envoy_prefix: /e, trusted_proxies: [10.0.0.1], client_cert_header: x-client-cert }",
            "/e",
        );
        let r = asked(
            &e,
            "GET",
            "/x",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-client-cert", "PEM"),
                ("x-forwarded-proto", "http"),
            ],
        )
        .unwrap();
        assert_eq!(r.client_ip, Some("127.0.0.1".parse().unwrap()), "the peer's own");
        assert_eq!((r.client_cert, r.scheme.as_str()), (None, ""));
    }

    #[test]
    fn the_client_address_comes_from_the_header_the_door_names_only() {
        let nginx = door("{ original_request: nginx }", "/auth");
        let base = [("x-original-method", "GET"), ("x-original-uri", "/")];
        let ip = |d: &Door, extra: &[(&str, &str)]| {
            let headers: Vec<_> = base.iter().chain(extra).copied().collect();
            asked(d, "GET", "", &headers).unwrap().client_ip.unwrap().to_string()
        };
        // nginx: X-Real-IP, which nginx sets; the client's own X-Forwarded-For is not read.
        assert_eq!(
            ip(&nginx, &[("x-real-ip", "198.51.100.4"), ("x-forwarded-for", "6.6.6.6")]),
            "198.51.100.4"
        );
        assert_eq!(ip(&nginx, &[("x-forwarded-for", "6.6.6.6")]), "127.0.0.1");
        assert_eq!(
            ip(&nginx, &[("x-real-ip", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]),
            "127.0.0.1",
            "sent twice"
        );
        assert_eq!(ip(&nginx, &[("x-real-ip", "not an address")]), "127.0.0.1");
        let xff = door(
            "{ original_request: nginx, client_ip_header: X-Forwarded-For, trusted_proxies: [127.0.0.1, 10.0.0.0/8] }",
            "/auth",
        );
        assert_eq!(
            ip(&xff, &[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.7")]),
            "198.51.100.4"
        );
        assert_eq!(
            ip(&xff, &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "10.1.1.1")]),
            "6.6.6.6",
            "one list"
        );
        assert_eq!(ip(&xff, &[("x-forwarded-for", "garbage, 10.0.0.7")]), "10.0.0.7");
        assert_eq!(ip(&xff, &[("x-forwarded-for", "::ffff:198.51.100.4")]), "198.51.100.4");
        let peer = door("{ original_request: nginx, client_ip_header: none }", "/auth");
        assert_eq!(ip(&peer, &[("x-real-ip", "198.51.100.4")]), "127.0.0.1");
    }

    #[test]
    fn the_client_certificate_comes_only_from_a_named_header_sent_once() {
        let base = [("x-original-method", "GET"), ("x-original-uri", "/")];
        let cert = |d: &Door, extra: &[(&str, &str)]| {
            let headers: Vec<_> = base.iter().chain(extra).copied().collect();
            asked(d, "GET", "", &headers).unwrap().client_cert
        };
        let none = door("{ original_request: nginx }", "/auth");
        assert_eq!(
            cert(&none, &[("x-forwarded-client-cert", "Hash=abc")]),
            None,
            "no default header"
        );
        let pem = door(
            "{ original_request: nginx, client_cert_header: x-client-cert }",
            "/auth",
        );
        assert_eq!(
            cert(&pem, &[("x-client-cert", "PEM")]),
            Some(ClientCert::Encoded("PEM".into()))
        );
        assert_eq!(cert(&pem, &[("x-client-cert", "A"), ("x-client-cert", "B")]), None);
        assert_eq!(cert(&pem, &[("x-client-cert", " ")]), None);
        assert_eq!(cert(&pem, &[("x-forwarded-client-cert", "Hash=abc")]), None);
    }
}
