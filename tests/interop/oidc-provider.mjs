// A real, independent OpenID provider (npm oidc-provider) for meetgate's
// interop test: client_credentials with a resource indicator, JWT access
// tokens signed ES256. Usage: node oidc-provider.mjs PORT KEYS_FILE [rotate]
// Keys persist in KEYS_FILE; "rotate" puts a new signing key first.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const [port, keysFile, mode] = process.argv.slice(2);
let keys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : [];
if (keys.length === 0 || mode === 'rotate') {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  Object.assign(jwk, { kid: `key-${keys.length + 1}`, alg: 'ES256', use: 'sig' });
  keys = [jwk, ...keys];
  writeFileSync(keysFile, JSON.stringify(keys));
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'meetgate-interop',
    client_secret: 'interop-client-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'api://meetings',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'meetings:read',
        audience: 'api://meetings',
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${keys[0].kid}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
