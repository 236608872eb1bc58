use super::*;
use crate::config::tests::{err, parse};

#[test]
fn all_of_providers_is_validated_and_needs_a_source_per_provider() {
    let two = |device_sources: &str, require: &str| {
        format!(
            "providers:\n  - {{ name: corp, issuer: c, jwks_uri: \"https://c/k\" }}\n  - {{ name: device, issuer: d, jwks_uri: \"https://d/k\"{device_sources} }}\nroutes:\n  - name: r\n    require: {{ providers: {require} }}\n"
        )
    };
    let own = ", sources: [{ header: x-device-token, prefix: \"\" }]";
    let c = parse(&two(own, "{ all_of: [corp, device] }")).unwrap();
    match &c.routes[0].auth {
        Auth::Required(r) => {
            assert_eq!(r.all_providers, ["corp", "device"]);
            assert!(r.providers.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let c = parse(&two(own, "{ any_of: [device] }")).unwrap();
    assert!(matches!(&c.routes[0].auth, Auth::Required(r) if r.providers == ["device"] && r.all_providers.is_empty()));

    let e = err(&two("", "{ all_of: [corp, device] }"));
    assert_eq!(e.field, "routes[0].require.providers.all_of");
    assert!(
        e.reason.contains("both look for their token in header authorization"),
        "{e}"
    );
    for (require, field, reason) in [
        (
            "{ all_of: [corp, nobody] }",
            "routes[0].require.providers.all_of",
            "no provider `nobody`",
        ),
        (
            "{ all_of: [corp, corp] }",
            "routes[0].require.providers.all_of",
            "named twice",
        ),
        ("{ all_of: [] }", "routes[0].require.providers", "exactly one of"),
        (
            "{ any_of: [corp], all_of: [device] }",
            "routes[0].require.providers",
            "exactly one of",
        ),
        ("{ some_of: [corp] }", "routes[0].require.providers", ""),
    ] {
        let e = err(&two(own, require));
        assert_eq!(e.field, field, "{require}: {e}");
        assert!(e.reason.contains(reason), "{require}: {e}");
    }
    // Different scheme prefixes in one header are different places.
    let dpop = ", sources: [{ header: authorization, prefix: \"DPoP \" }]";
    assert!(parse(&two(dpop, "{ all_of: [corp, device] }")).is_ok());
}
