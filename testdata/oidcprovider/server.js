// An independent OpenID provider for idflow's integration tests: panva's
// oidc-provider (a certified implementation), configured the way a real
// deployment in front of an API would be. It is never used in production.
//
// usage: node server.js [--port N] [--audience URL]... [--redirect-uri URL]...
//   --port          0 (the default) picks a free port; PORT works too
//   --audience      a resource indicator (RFC 8707) the provider issues JWT
//                   access tokens for; repeatable or comma-separated; the
//                   first is the default resource
//   --redirect-uri  extra redirect URIs of the public and web clients
//
// When ready it prints exactly one line on stdout: LISTENING <issuer URL>.
//
// Clients (fixed, test-only credentials):
//   idflow-test-public   public, authorization code + PKCE (S256)
//   idflow-test-web      confidential (client_secret_basic/post), authorization code + PKCE
//   idflow-test-service  confidential, client_credentials only
//   idflow-test-downstream  confidential (client_secret_basic), authorization
//                        code + refresh tokens: the provider in the downstream
//                        role of idflow's connect flow
//   idflow-test-cli      public native client of `idflow login`: authorization
//                        code (any loopback port, RFC 8252), device flow
//                        (RFC 8628), refresh tokens
//
// The two clients allowed refresh_token get a refresh token on every grant
// (without offline_access/prompt=consent), rotated on every use; the
// revocation endpoint is on.
//
// devInteractions are on: the login form accepts any account id with any
// password, so a test can sign in as alice, bob, ... Claims: sub (the
// account id), email, email_verified, name, and tid (a tenant id). Access
// tokens for an audience are RS256 JWTs (RFC 9068) that also carry email,
// name and tid for user tokens.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT || '0' },
    audience: { type: 'string', multiple: true, default: [] },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
  },
});

const split = (list) => list.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
const audiences = split(opts.audience);
if (audiences.length === 0) {
  audiences.push(process.env.AUDIENCE || 'https://api.idflow.test');
}
const extraRedirects = split(opts['redirect-uri']);

// Fixed accounts get a known tenant; any other account id works too.
const tenants = { alice: 't-one', bob: 't-one', carol: 't-two', admin: 't-one' };
const accountClaims = (id) => ({
  sub: id,
  email: `${id}@example.test`,
  email_verified: true,
  name: id.charAt(0).toUpperCase() + id.slice(1),
  tid: tenants[id] || 't-default',
});

// A fresh RS256 signing key per process; its public half is at /jwks.
// The key leaves generateKeyPairSync as PEM and is re-imported before the
// JWK export: exporting the generated KeyObject directly deadlocks now and
// then on Node 20 (a GC finalizing the key generation job takes a mutex that
// the export holds; seen as a hang after the first startup warning).
const { privateKey: pem } = crypto.generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const signingKey = {
  ...crypto.createPrivateKey(pem).export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig',
};

const server = http.createServer();
server.listen(Number(opts.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'idflow-test-public',
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...extraRedirects],
      },
      {
        client_id: 'idflow-test-web',
        client_secret: 'idflow-test-web-secret',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...extraRedirects],
      },
      {
        client_id: 'idflow-test-downstream',
        client_secret: 'idflow-test-downstream-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...extraRedirects],
      },
      {
        client_id: 'idflow-test-cli',
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
      },
      {
        client_id: 'idflow-test-service',
        client_secret: 'idflow-test-service-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      tenant: ['tid'],
    },
    scopes: ['openid', 'email', 'profile', 'tenant', 'offline_access', 'api'],
    async findAccount(ctx, id) {
      return { accountId: id, claims: async () => accountClaims(id) };
    },
    async extraTokenClaims(ctx, token) {
      if (!token.accountId) {
        return undefined; // client_credentials: sub is the client id (RFC 9068)
      }
      const { email, name, tid } = accountClaims(token.accountId);
      return { email, name, tid };
    },
    // Only the clients allowed refresh_token (downstream, cli) get one.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audiences[0],
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (!audiences.includes(resourceIndicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'api',
            audience: resourceIndicator,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      ClientCredentials: 600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  provider.on('server_error', (ctx, err) => {
    console.error('oidc-provider server_error:', err);
  });

  server.on('request', provider.callback());
  process.stdout.write(`LISTENING ${issuer}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
