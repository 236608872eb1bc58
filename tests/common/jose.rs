//! Test material from panva's `jose` (tests/idp/dpop.mjs, run with Node): an ES256 issuer's
//! access tokens (DPoP- or certificate-bound), clients' DPoP proofs, RFC 7638 thumbprints and
//! RFC 8705 certificate thumbprints — made by a library jwtgate's authors did not write.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Providers for this issuer's tokens (the JWKS as `jwks.json`): `mesh` (https://mesh.test)
/// binds tokens to client certificates, `strict` (https://strict.test) requires DPoP.
pub const BOUND_PROVIDERS: &str = "  - name: mesh
    issuer: \"https://mesh.test\"
    jwks_file: jwks.json
    audiences: [api]
    claims_to_headers: { sub: x-jwt-sub }
    mtls_binding: { mode: required }
  - name: strict
    issuer: \"https://strict.test\"
    jwks_file: jwks.json
    audiences: [api]
    claims_to_headers: { sub: x-jwt-sub }
    dpop: { mode: required }
";

/// A certificate's RFC 8705 `x5t#S256` (base64url) as Envoy's `X-Forwarded-Client-Cert` carries
/// it in `Hash=`: lower-case hex.
pub fn xfcc_hash(x5t: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x5t)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One set of keys (the issuer's and the clients'), kept in a temporary directory.
pub struct Jose {
    dir: tempfile::TempDir,
}

impl Jose {
    /// New keys, made on first use.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `dpop.mjs COMMAND INPUT` and parses what it prints.
    pub fn call(&self, command: &str, input: &Value) -> Value {
        let node = super::tools::NODE.path();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/dpop.mjs");
        let out = Command::new(node)
            .arg(script)
            .arg(self.dir.path())
            .arg(command)
            .arg(input.to_string())
            .output()
            .expect("node (tests/run.sh installs tests/idp's packages)");
        assert!(
            out.status.success(),
            "dpop.mjs {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn text(&self, command: &str, input: &Value) -> String {
        self.call(command, input).as_str().unwrap().to_owned()
    }

    /// The issuer's JWKS, as a `jwks_file`.
    pub fn jwks(&self) -> Vec<u8> {
        self.call("jwks", &json!({})).to_string().into_bytes()
    }

    /// An access token with `claims` (iat and exp added).
    pub fn token(&self, claims: Value) -> String {
        self.text("token", &json!({ "claims": claims }))
    }

    /// An access token with `claims`, DPoP-bound (`cnf.jkt`) to `client`'s `alg` key.
    pub fn bound_token(&self, claims: Value, client: &str, alg: &str) -> String {
        self.text(
            "token",
            &json!({ "claims": claims, "bind": { "client": client, "alg": alg } }),
        )
    }

    /// A DPoP proof: `input` as dpop.mjs's `proof` takes it.
    pub fn proof(&self, input: Value) -> String {
        self.text("proof", &input)
    }

    /// RFC 7638 thumbprint of `jwk`.
    pub fn thumbprint(&self, jwk: Value) -> String {
        self.text("thumbprint", &json!({ "jwk": jwk }))
    }

    /// RFC 8705 `x5t#S256` of the PEM certificate in `file`.
    pub fn x5t(&self, file: &Path) -> String {
        self.text("x5t", &json!({ "pem_file": file }))
    }

    /// The key directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}
