// Checks tokens minted by meetgate with independent implementations:
// jsrsasign (the library Zoom's auth-endpoint samples sign with) and the
// official OpenTok SDK's own project-JWT generator.
// stdin: {"tokens": [{"jwt", "secret"}], "opentok": {"apiKey", "apiSecret", "expire"}}
// stdout: {"jsrsasign": [bool...], "opentok_claims": {...}, "opentok_verifies_ours": [bool...]}
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { KJUR } = require('jsrsasign');
const generateJwt = require('opentok/lib/generateJwt');
const jsonwebtoken = require('jsonwebtoken');

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

// {utf8: ...}: jsrsasign would hex-decode a hex-looking string key.
const jsrsasign = input.tokens.map(({ jwt, secret }) =>
  KJUR.jws.JWS.verifyJWT(jwt, { utf8: secret }, { alg: ['HS256'], verifyAt: KJUR.jws.IntDate.getNow() }));

const o = input.opentok;
const official = generateJwt({ apiKey: o.apiKey, apiSecret: o.apiSecret, auth: { expire: o.expire } });
const opentokClaims = JSON.parse(Buffer.from(official.split('.')[1], 'base64url').toString('utf8'));
const opentokVerifiesOurs = input.tokens
  .filter((t) => t.secret === o.apiSecret)
  .map(({ jwt }) => { try { jsonwebtoken.verify(jwt, o.apiSecret, { algorithms: ['HS256'] }); return true; } catch { return false; } });

console.log(JSON.stringify({ jsrsasign, opentok_claims: opentokClaims, opentok_verifies_ours: opentokVerifiesOurs }));
