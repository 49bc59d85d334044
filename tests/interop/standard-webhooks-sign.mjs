// Signs a payload with the reference Standard Webhooks library (npm
// `standardwebhooks`), independently of meetgate.
// Usage: node standard-webhooks-sign.mjs SECRET MSG_ID UNIX_SECONDS < payload
// Prints the three headers as JSON.
import { Webhook } from 'standardwebhooks';

const [secret, id, ts] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const payload = Buffer.concat(chunks).toString('utf8');
const signature = new Webhook(secret).sign(id, new Date(Number(ts) * 1000), payload);
console.log(JSON.stringify({ 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': signature }));
