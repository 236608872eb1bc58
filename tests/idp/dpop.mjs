// DPoP (RFC 9449) and certificate-bound (RFC 8705) test material made with panva's `jose`, a
// library jwtgate's authors did not write: an issuer's signed access tokens and clients' proofs.
//
//   node dpop.mjs DIR COMMAND JSON
//
// DIR keeps the keys between calls (made on first use): issuer.json (ES256) and one file per
// client key (client-NAME-ALG.json). Prints one JSON value.
//   jwks {}                                   -> the issuer's public JWKS
//   thumbprint {client, alg} | {jwk}          -> RFC 7638 SHA-256 thumbprint
//   x5t {pem_file}                            -> RFC 8705 x5t#S256 of that certificate
//   token {claims, bind?: {client, alg}}      -> access token; bind adds cnf.jkt of that key
//   proof {client, alg, htm, htu, token?, iat?, jti?, typ?, ath?, jwk?, private?, signer?}
//                                             -> DPoP proof; `signer` signs with another
//                                                client's key than the `jwk` it shows,
//                                                `private` puts the private key in `jwk`;
//                                                alg HS256 signs with a random secret
//                                                (showing an ES256 key), alg none is
//                                                jose's unsecured JWT
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { X509Certificate, createHash, randomUUID } from "node:crypto";
import { join } from "node:path";
import { SignJWT, UnsecuredJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from "jose";

const [dir, command, arg] = process.argv.slice(2);
const input = JSON.parse(arg ?? "{}");
mkdirSync(dir, { recursive: true });

async function key(file, alg) {
  const path = join(dir, file);
  if (!existsSync(path)) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true, crv: alg === "EdDSA" ? "Ed25519" : undefined });
    writeFileSync(path, JSON.stringify(await exportJWK(privateKey)));
  }
  const priv = JSON.parse(readFileSync(path, "utf8"));
  const { d, p, q, dp, dq, qi, ...pub } = priv;
  return { priv, pub, signer: await importJWK(priv, alg) };
}

const issuer = () => key("issuer.json", "ES256");
const client = (name, alg) => key(`client-${name}-${alg}.json`, alg);
const out = (v) => process.stdout.write(JSON.stringify(v));

switch (command) {
  case "jwks": {
    const { pub } = await issuer();
    out({ keys: [{ ...pub, kid: "issuer-1", alg: "ES256", use: "sig" }] });
    break;
  }
  case "thumbprint": {
    const jwk = input.jwk ?? (await client(input.client, input.alg)).pub;
    out(await calculateJwkThumbprint(jwk, "sha256"));
    break;
  }
  case "x5t": {
    const cert = new X509Certificate(readFileSync(input.pem_file));
    out(createHash("sha256").update(cert.raw).digest("base64url"));
    break;
  }
  case "token": {
    const { signer } = await issuer();
    const claims = { ...input.claims };
    if (input.bind) {
      const { pub } = await client(input.bind.client, input.bind.alg);
      claims.cnf = { ...(claims.cnf ?? {}), jkt: await calculateJwkThumbprint(pub, "sha256") };
    }
    const now = Math.floor(Date.now() / 1000);
    out(await new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid: "issuer-1", typ: "at+jwt" })
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(signer));
    break;
  }
  case "proof": {
    const claims0 = { htm: input.htm, htu: input.htu, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) };
    if (input.alg === "none") {
      out(new UnsecuredJWT(claims0).encode());
      break;
    }
    if (input.alg.startsWith("HS")) {
      const { pub } = await client(input.client, "ES256");
      const secret = new TextEncoder().encode(randomUUID() + randomUUID());
      out(await new SignJWT(claims0).setProtectedHeader({ typ: "dpop+jwt", alg: input.alg, jwk: pub }).sign(secret));
      break;
    }
    const shown = await client(input.client, input.alg);
    const signing = input.signer ? await client(input.signer, input.alg) : shown;
    const claims = {
      jti: input.jti ?? randomUUID(),
      htm: input.htm,
      htu: input.htu,
      iat: input.iat ?? Math.floor(Date.now() / 1000),
    };
    if (input.ath !== undefined) {
      claims.ath = input.ath;
    } else if (input.token) {
      claims.ath = createHash("sha256").update(input.token).digest("base64url");
    }
    const header = {
      typ: input.typ ?? "dpop+jwt",
      alg: input.alg,
      jwk: input.jwk ?? (input.private ? shown.priv : shown.pub),
    };
    out(await new SignJWT(claims).setProtectedHeader(header).sign(signing.signer));
    break;
  }
  default:
    throw new Error(`unknown command ${command}`);
}
