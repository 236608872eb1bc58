use super::*;
use crate::config::Config;

const PROVIDER: &str = "providers:\n  - name: corp\n    issuer: https://i/\n    jwks_uri: https://i/k\n    claims_to_headers: { sub: x-jwt-sub }\n";

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(&format!("{PROVIDER}{extra}"), "t.yaml", std::path::Path::new("."))
}

fn err(extra: &str) -> ConfigError {
    parse(extra).unwrap_err()
}

#[test]
fn auth_reads_the_nginx_family_from_loopback_by_default() {
    let c = parse("").unwrap();
    let (door, rest) = c.http_auth.door("/auth").unwrap();
    assert_eq!((door.family, rest), (Family::Nginx, ""));
    assert_eq!(door.client_ip, ClientIpHeader::Single("x-real-ip".into()));
    assert_eq!(door.client_cert, None, "no certificate header unless named");
    assert!(door.trusts("127.0.0.1".parse().unwrap()) && door.trusts("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!door.trusts("10.0.0.1".parse().unwrap()));
    assert!(
        c.http_auth.door("/ext_authz/x").is_none(),
        "no envoy door unless configured"
    );
    assert!(c.http_auth.door("/auth/x").is_none());
}

#[test]
fn each_door_reads_its_own_family_with_its_own_defaults() {
    let c = parse(
        "http_auth:
  original_request: forwarded
  envoy_prefix: /ext_authz
  client_cert_header: X-Client-Cert
  doors:
    - { path: /auth/nginx, original_request: nginx, trusted_proxies: [10.0.0.5] }
    - { path: /auth/ingress, original_request: ingress_nginx, client_ip_header: none }
    - { path: /gw, original_request: envoy, client_cert_header: x-forwarded-client-cert }
",
    )
    .unwrap();
    let door = |p| c.http_auth.door(p).unwrap();
    assert_eq!(door("/auth").0.family, Family::Forwarded);
    assert_eq!(door("/auth").0.client_ip, ClientIpHeader::ForwardedFor);
    assert_eq!(
        door("/auth").0.client_cert,
        Some(ClientCertHeader::Encoded("x-client-cert".into()))
    );
    assert_eq!(door("/ext_authz/a/b").1, "/a/b");
    assert_eq!(door("/ext_authz").1, "");
    assert!(c.http_auth.door("/ext_authzx").is_none());
    let nginx = door("/auth/nginx").0;
    assert_eq!(nginx.family, Family::Nginx);
    assert!(nginx.trusts("10.0.0.5".parse().unwrap()) && !nginx.trusts("127.0.0.1".parse().unwrap()));
    assert_eq!(nginx.client_cert, None, "a door's certificate header is its own");
    assert_eq!(door("/auth/ingress").0.client_ip, ClientIpHeader::Peer);
    assert_eq!(door("/gw/x").0.client_cert, Some(ClientCertHeader::Xfcc));
    assert!(door("/gw/x").0.context.is_empty());
}

#[test]
fn auth_itself_can_be_envoys_prefix() {
    let c = parse("http_auth: { original_request: envoy }\n").unwrap();
    let (door, rest) = c.http_auth.door("/auth/admin/x").unwrap();
    assert_eq!((door.family, rest), (Family::Envoy, "/admin/x"));
    assert_eq!(door.client_ip, ClientIpHeader::ForwardedFor);
    assert_eq!(c.http_auth.door("/auth").unwrap().1, "");
    assert!(c.http_auth.door("/authx").is_none());
    let e = err("http_auth: { original_request: envoy, envoy_prefix: /auth }\n");
    assert_eq!(e.field, "http_auth.envoy_prefix", "{e}");
}

#[test]
fn a_door_carries_the_context_its_config_gives() {
    let c = parse(
        "http_auth:
  original_request: ingress_nginx
  doors:
    - { path: /auth/admin, original_request: ingress_nginx, context: { ingress: admin } }
",
    )
    .unwrap();
    let door = |p| c.http_auth.door(p).unwrap().0;
    assert_eq!(
        door("/auth/admin").context,
        [("ingress".to_owned(), "admin".to_owned())]
    );
    assert!(door("/auth").context.is_empty());
}

#[test]
fn doors_that_are_wrong_are_refused_with_field_and_reason() {
    for (yaml, field, reason) in [
        (
            "http_auth: { original_request: traefik }",
            "http_auth.original_request",
            "unknown variant",
        ),
        (
            "http_auth: { envoy_prefix: /auth }",
            "http_auth.envoy_prefix",
            "own paths",
        ),
        (
            "http_auth: { envoy_prefix: /x/ }",
            "http_auth.envoy_prefix",
            "no trailing",
        ),
        (
            "http_auth: { doors: [{ path: /auth, original_request: forwarded }] }",
            "http_auth.doors[0]",
            "overlap",
        ),
        (
            "http_auth: { envoy_prefix: /e, doors: [{ path: /e/auth, original_request: nginx }] }",
            "http_auth.doors[0]",
            "overlap",
        ),
        (
            "http_auth: { doors: [{ path: /auth/x, original_request: envoy }, { path: /auth/x/y, original_request: nginx }] }",
            "http_auth.doors[1]",
            "overlap",
        ),
        (
            "http_auth: { doors: [{ path: /metrics, original_request: nginx }] }",
            "http_auth.doors[0].path",
            "own paths",
        ),
        (
            "http_auth: { doors: [{ path: auth2, original_request: nginx }] }",
            "http_auth.doors[0].path",
            "leading `/`",
        ),
        (
            "http_auth: { doors: [{ original_request: nginx }] }",
            "http_auth.doors[0]",
            "missing field `path`",
        ),
        (
            "http_auth: { client_ip_header: \"x real ip\" }",
            "http_auth.client_ip_header",
            "not a valid HTTP header name",
        ),
        (
            "http_auth: { trusted_proxies: [10.0.0.0/33] }",
            "http_auth.trusted_proxies[0]",
            "not an address or CIDR",
        ),
        (
            "http_auth: { client_ip_header: X-Original-URI }",
            "http_auth.client_ip_header",
            "`x-original-uri` names the original request",
        ),
        (
            "http_auth: { client_cert_header: authorization }",
            "http_auth.client_cert_header",
            "`authorization` is read for something else",
        ),
        (
            "http_auth: { client_ip_header: x-forwarded-host }",
            "http_auth.client_ip_header",
            "`x-forwarded-host` is read for something else",
        ),
        (
            "http_auth: { doors: [{ path: /a, original_request: nginx, client_cert_header: x-jwt-sub }] }",
            "http_auth.doors[0].client_cert_header",
            "`x-jwt-sub` is an identity header of provider corp",
        ),
    ] {
        let e = err(&format!("{yaml}\n"));
        assert_eq!(e.field, field, "{yaml}: {e}");
        assert!(e.reason.contains(reason), "{yaml}: {e}");
    }
}

#[test]
fn certificate_bound_tokens_need_the_certificate_header_named() {
    let bound = "providers:\n  - name: mesh\n    issuer: https://m/\n    jwks_uri: https://m/k\n    mtls_binding: { mode: required }\n";
    let parse = |extra: &str| Config::parse(&format!("{bound}{extra}"), "t.yaml", std::path::Path::new("."));
    let e = parse("").unwrap_err();
    assert_eq!(e.field, "http_auth.client_cert_header", "{e}");
    assert!(e.reason.contains("providers[0].mtls_binding"), "{e}");
    let c = parse("http_auth: { client_cert_header: none }\n").unwrap();
    assert_eq!(c.http_auth.door("/auth").unwrap().0.client_cert, None);
    let c = parse("http_auth: { client_cert_header: X-Forwarded-Client-Cert }\n").unwrap();
    assert_eq!(
        c.http_auth.door("/auth").unwrap().0.client_cert,
        Some(ClientCertHeader::Xfcc)
    );
}
