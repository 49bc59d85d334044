// An independent OAuth 2.0 authorization server (npm oidc-provider) laid out
// like Zoom's user OAuth, for meetgate's interop test of ZoomUserClient:
// routes /oauth/authorize, /oauth/token, /oauth/revoke; PKCE required (S256
// is the only method oidc-provider supports); one confidential client with
// client_secret_basic; refresh tokens with rotation (a used one is refused).
// The login and consent steps are oidc-provider's dev interactions (any
// login name, any password).
//
// Usage: node zoom-oauth-provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Prints "ready" once listening.
//
// Zoom's shapes that a generic server does not have, added here so the
// answer reads as Zoom's (spec section 1):
// - Zoom grants the scopes configured on the app and its authorize URL has
//   no `scope`; an authorize request without one is given APP_SCOPES, so the
//   token answer's standard `scope` lists them (ZoomUserClient requires it);
// - Zoom's token answer carries `api_url`; added to successful token
//   answers (the provider's own origin, the API base the client is set to).
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const APP_SCOPES = 'user:read:token user:read:zak';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'zoom-interop-1', alg: 'ES256', use: 'sig' };

const provider = new Provider(base, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [redirectUri],
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['zoom-interop-cookie-key-0123456789'] },
  scopes: ['openid', 'offline_access', ...APP_SCOPES.split(' ')],
  routes: {
    authorization: '/oauth/authorize',
    token: '/oauth/token',
    revocation: '/oauth/revoke',
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
  },
  // Zoom: every code grant gets a refresh token, and each refresh rotates it.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: 3599,
    AuthorizationCode: 300,
    RefreshToken: 90 * 24 * 3600,
    Grant: 90 * 24 * 3600,
    Interaction: 600,
    Session: 600,
  },
});

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/oauth/authorize' && ctx.query.scope === undefined) {
    ctx.query = { ...ctx.query, scope: APP_SCOPES };
  }
  await next();
  if (ctx.path === '/oauth/token' && ctx.status === 200 && ctx.body && ctx.body.access_token) {
    ctx.body = { ...ctx.body, api_url: base };
  }
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log('ready');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
