// Test OAuth 2.0 authorization server for jwtgate integration tests.
// Built on oidc-provider (in-memory storage, built-in dev signing keys).
//
//   node tests/idp/idp.mjs [--port 0] [--token-ttl 600]
//
// Prints exactly one stdout line once ready: `listening http://127.0.0.1:<port>`.
// Everything else (oidc-provider notices, errors) goes to stderr.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'token-ttl': { type: 'string', default: '600' },
  },
});
const port = Number(args.port);
const tokenTTL = Number(args['token-ttl']);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${args.port}`);
if (!Number.isSafeInteger(tokenTTL) || tokenTTL <= 0) throw new Error(`bad --token-ttl ${args['token-ttl']}`);

// oidc-provider prints NOTICEs with console.info (stdout!) and WARNINGs with console.warn.
// Keep stdout for the single "listening" line, and drop the expected quick-start warnings
// (in-memory adapter, dev keys, "Unsupported runtime" on Node 20). Must happen before the
// provider module is imported, hence the dynamic import below.
const EXPECTED = /in-memory adapter|development-only signing keys|Unsupported runtime/;
const toStderr = (...a) => {
  const line = a.join(' ');
  if (!EXPECTED.test(line)) process.stderr.write(`${line}\n`);
};
console.log = console.info = console.warn = console.debug = toStderr;
const { default: Provider, errors } = await import('oidc-provider');

const RESOURCE = 'urn:jwtgate:api'; // resource indicator applied when the request has none
const AUDIENCE = 'api'; // -> `aud` of every access token
const API_SCOPES = 'read write admin';
const INTROSPECTION_PATH = '/token/introspection';

let handler; // oidc-provider's request listener, created once the port (part of the issuer) is known
let introspections = 0; // POSTs that reached INTROSPECTION_PATH
let slowMs = 0; // delay applied before each introspection is processed

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

const server = http.createServer(async (req, res) => {
  const { pathname, searchParams } = new URL(req.url, 'http://x');
  // Test-control endpoints, outside oidc-provider.
  if (pathname === '/__stats' && req.method === 'GET') {
    return json(res, 200, { introspections });
  }
  if (pathname === '/__slow' && req.method === 'POST') {
    const ms = Number(searchParams.get('ms') ?? 0);
    if (!Number.isFinite(ms) || ms < 0) return json(res, 400, { error: 'ms must be >= 0' });
    slowMs = ms;
    res.writeHead(204).end();
    return;
  }
  if (pathname === INTROSPECTION_PATH && req.method === 'POST') {
    introspections += 1;
    if (slowMs > 0) {
      await sleep(slowMs); // body stays unread (buffered) meanwhile
      if (req.destroyed) return; // caller gave up (timeout test); nothing to answer
    }
  }
  return handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        // Token requester. Either client_secret_basic or client_secret_post is accepted
        // (oidc-provider treats both as the same secret-based method family).
        client_id: 'app',
        client_secret: 'app-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: API_SCOPES,
      },
      {
        // Resource server: only calls introspection.
        client_id: 'jwtgate',
        client_secret: 'jwtgate-secret',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Known scopes: with the client's `scope` above, `app` may only request these.
    scopes: ['openid', 'offline_access', ...API_SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false }, // no login UI needed
      clientCredentials: { enabled: true }, // the grant is off by default
      introspection: {
        enabled: true,
        // jwtgate may introspect any token; other clients only their own.
        allowedPolicy: async (ctx, client, token) =>
          client.clientId === 'jwtgate' || client.clientId === token.clientId,
      },
      revocation: {
        enabled: true,
        // only the client a token was issued to may revoke it
        allowedPolicy: async (ctx, client, token) => client.clientId === token.clientId,
      },
      resourceIndicators: {
        enabled: true,
        // Without this, a request with no `resource` gets a token with no audience and
        // only OIDC scopes (read/write/admin would be silently dropped).
        defaultResource: async () => RESOURCE,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: API_SCOPES,
            audience: AUDIENCE,
            accessTokenFormat: 'opaque', // random 43-char string, no dots; 'jwt' would make JWTs
          };
        },
      },
    },
    ttl: { ClientCredentials: () => tokenTTL }, // client_credentials tokens are this model
    routes: { introspection: INTROSPECTION_PATH, revocation: '/token/revocation' },
    cookies: { keys: ['jwtgate-test-idp-cookie-key'] },
  });
  provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
  handler = provider.callback();
  process.stdout.write(`listening ${issuer}\n`);
});

// Clean shutdown: stop accepting, drop keep-alive sockets, exit 0.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
