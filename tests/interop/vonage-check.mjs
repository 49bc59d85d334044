// Checks meetgate's Vonage Video and OpenTok output with the official SDKs
// (docs/platforms/platforms-2026.md sections 4, 5 and 12), and signs Vonage
// callbacks independently of meetgate and of the Rust tests.
//
// stdin {"op": "sign_callbacks", "secret", "wrong_secret", "application_id", "api_key", "body"}
// stdout {"valid", "wrong_secret"}: Authorization values (jsonwebtoken HS256,
//   claims as Vonage documents them, payload_hash over the raw body bytes),
//   and "sdk_accepts_valid" / "sdk_accepts_wrong_secret": @vonage/jwt's view of them.
//
// stdin {"op": "check", "vonage": {...}, "callbacks": [...], "opentok": {...}}
// stdout: per token what the SDKs say (verification results, the SDKs' own
//   tokens for the same inputs, decoded headers and claims); the Rust test
//   compares.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';

const require = createRequire(import.meta.url);

// Re-mints fix the SDKs' random parts (spec section 12): uuid 14 (under
// @vonage/jwt 1.17.1) calls globalThis.crypto.randomUUID at call time, and
// Date is replaced only while re-minting.
let fixedUUID = null;
const realUUID = globalThis.crypto.randomUUID.bind(globalThis.crypto);
globalThis.crypto.randomUUID = () => fixedUUID ?? realUUID();
const RealDate = Date;
function atClock(sec, uuid, f) {
  const ms = sec * 1000;
  globalThis.Date = class extends RealDate {
    constructor(...a) { if (a.length === 0) super(ms); else super(...a); }
    static now() { return ms; }
  };
  fixedUUID = uuid;
  try { return f(); } finally { globalThis.Date = RealDate; fixedUUID = null; }
}

const jsonwebtoken = require('jsonwebtoken');
const { tokenGenerate, verifySignature } = require('@vonage/jwt');
const { Video } = require('@vonage/video');
// What @vonage/video authenticates its REST calls with.
const { Auth } = createRequire(require.resolve('@vonage/video'))('@vonage/auth');
const OpenTok = require('opentok');
// opentok's own T1 decoder and signature check (its opentok-token dependency).
const t1Helpers = createRequire(require.resolve('opentok'))('opentok-token/helpers');

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const sha256Hex = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

// Header and claims as decoded by jsonwebtoken (the library the SDKs use),
// with the exact header JSON and the claim names in their order.
function decode(jwt) {
  const d = jsonwebtoken.decode(jwt, { complete: true });
  return {
    header_json: Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'),
    header: d.header,
    claims: d.payload,
    claim_names: Object.keys(d.payload),
  };
}

function jwtVerifies(jwt, key, algorithms) {
  try { jsonwebtoken.verify(jwt, key, { algorithms }); return true; } catch { return false; }
}

// A T1 token: "T1==" + base64("partner_id=KEY&sig=HEX:" + data), data kept
// as sent (percent-encoded), field by field in order.
function parseT1(token) {
  if (!token.startsWith('T1==')) return { prefix_ok: false };
  const b64 = token.slice(4);
  const inner = Buffer.from(b64, 'base64').toString('utf8');
  const colon = inner.indexOf(':');
  const head = Object.fromEntries(new URLSearchParams(inner.slice(0, colon)));
  const data = inner.slice(colon + 1);
  const fields = data.split('&').map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
  return {
    prefix_ok: true,
    // Standard padded base64 of the bytes, as Buffer writes it.
    canonical_base64: Buffer.from(inner, 'utf8').toString('base64') === b64,
    head_names: Object.keys(head),
    partner_id: head.partner_id,
    sig: head.sig,
    data,
    fields,
  };
}

function signCallback(secret, { application_id, api_key, body }) {
  const claims = {
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    iss: 'Vonage',
    payload_hash: sha256Hex(Buffer.from(body, 'utf8')),
    api_key,
    application_id,
  };
  return jsonwebtoken.sign(claims, secret, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT' } });
}

function checkVonage(v, otherPublicPem) {
  const publicPem = crypto.createPublicKey(v.private_key_pem).export({ type: 'spki', format: 'pem' });
  const out = {};

  // Application JWTs injected upstream, against the SDK's own REST JWTs.
  out.app_jwts = v.app_jwts.map((jwt) => {
    const d = decode(jwt);
    return {
      verifies: verifySignature(jwt, publicPem),
      verifies_other_key: verifySignature(jwt, otherPublicPem),
      ...d,
      // tokenGenerate with ours' clock and jti: the SDK's token for the same instant.
      remint: atClock(d.claims.iat, d.claims.jti, () => tokenGenerate(v.application_id, v.private_key_pem, {})),
    };
  });
  return new Auth({ applicationId: v.application_id, privateKey: v.private_key_pem })
    .createBearerHeader()
    .then((bearer) => {
      out.sdk_bearer_scheme = bearer.split(' ')[0];
      out.sdk_app_jwt = decode(bearer.slice('Bearer '.length));

      // Client tokens: @vonage/video's generateClientToken and opentok in
      // Vonage mode (application ID + PKCS#8 key) for the same inputs.
      const video = new Video({ applicationId: v.application_id, privateKey: v.private_key_pem });
      const opentokVonage = new OpenTok(v.application_id, v.private_key_pem);
      out.client_tokens = v.client_tokens.map((t) => {
        const d = decode(t.token);
        const opts = {
          role: t.role,
          data: d.claims.connection_data,
          initialLayoutClassList: t.classes,
        };
        return {
          verifies: verifySignature(t.token, publicPem),
          verifies_other_key: verifySignature(t.token, otherPublicPem),
          ...d,
          sdk: decode(video.generateClientToken(t.session_id, { ...opts, expireTime: d.claims.exp })),
          opentok_vonage_mode: decode(opentokVonage.generateToken(t.session_id, { ...opts, expire_time: d.claims.exp })),
          remint: atClock(d.claims.iat, d.claims.jti,
            () => video.generateClientToken(t.session_id, { ...opts, expireTime: d.claims.exp })),
        };
      });
      return out;
    });
}

function checkOpenTok(o) {
  const ot = new OpenTok(o.api_key, o.api_secret);
  const wrong = o.api_secret + 'x';
  const jwt_tokens = o.jwt_tokens.map((t) => {
    const d = decode(t.token);
    const opts = { role: t.role, data: d.claims.connection_data, initialLayoutClassList: t.classes };
    return {
      // opentok signs and (in its tests) checks with jsonwebtoken, HS256.
      verifies: jwtVerifies(t.token, o.api_secret, ['HS256']),
      verifies_wrong_secret: jwtVerifies(t.token, wrong, ['HS256']),
      ...d,
      sdk: decode(ot.generateToken(t.session_id, opts)),
      // The random parts (nonce, create_time, the clock for iat) as ours.
      remint: atClock(d.claims.iat, null, () => ot.generateToken(t.session_id, {
        ...opts,
        nonce: d.claims.nonce,
        create_time: d.claims.create_time,
        expireTime: d.claims.expire_time,
      })),
    };
  });
  const t1_tokens = o.t1_tokens.map((t) => {
    const ours = parseT1(t.token);
    const decoded = t1Helpers.decodeToken(t.token);
    const opts = { role: t.role, data: decoded.connection_data, initialLayoutClassList: t.classes };
    return {
      ours,
      decoded,
      verifies: t1Helpers.verifyTokenSignature(t.token, o.api_secret),
      verifies_wrong_secret: t1Helpers.verifyTokenSignature(t.token, wrong),
      sig_is_hmac_sha1_of_data: crypto.createHmac('sha1', o.api_secret).update(ours.data ?? '').digest('hex') === ours.sig,
      // The SDK's T1 token (generateT1Token = true) with its own random parts.
      sdk: parseT1(ot.generateToken(t.session_id, opts, true)),
      // ... and with ours: the whole token should be the same bytes.
      remint: ot.generateToken(t.session_id, {
        ...opts,
        nonce: Number(decoded.nonce),
        create_time: Number(decoded.create_time),
        expireTime: Number(decoded.expire_time),
      }, true),
    };
  });
  return { jwt_tokens, t1_tokens };
}

function checkCallbacks(callbacks) {
  return callbacks.map((c) => {
    const jwt = c.authorization.replace(/^Bearer /i, '');
    return {
      verifies: verifySignature(jwt, c.secret),
      verifies_wrong_secret: verifySignature(jwt, c.secret + 'x'),
      ...decode(jwt),
      body_sha256: sha256Hex(Buffer.from(c.body, 'utf8')),
      now: Math.floor(Date.now() / 1000),
    };
  });
}

let result;
if (input.op === 'sign_callbacks') {
  const valid = signCallback(input.secret, input);
  const wrongSecret = signCallback(input.wrong_secret, input);
  result = {
    valid: `Bearer ${valid}`,
    wrong_secret: `Bearer ${wrongSecret}`,
    sdk_accepts_valid: verifySignature(valid, input.secret),
    sdk_accepts_wrong_secret: verifySignature(wrongSecret, input.secret),
  };
} else if (input.op === 'check') {
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey
    .export({ type: 'spki', format: 'pem' });
  result = {
    vonage: input.vonage ? await checkVonage(input.vonage, other) : null,
    opentok: input.opentok ? checkOpenTok(input.opentok) : null,
    callbacks: checkCallbacks(input.callbacks ?? []),
  };
} else {
  throw new Error(`unknown op ${input.op}`);
}
console.log(JSON.stringify(result));
