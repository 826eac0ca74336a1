// Test OAuth 2.0 server for credagent's integration tests.
//
// A real authorization server (the oidc-provider package, client-credentials grant) behind
// node's HTTPS server, plus test-only endpoints:
//   GET  /_test/stats       counts of requests to the real token endpoint and to the fault endpoints
//   POST /_test/reset       clears those counts (not the delay)
//   POST /_test/delay       {"ms": N}: every real token endpoint answer waits N ms (0 clears)
//   GET  /_test/introspect  ?token=T: looks T up in the provider's own token store
//   POST /_test/drop_connections  closes every connection but the one asking (keep-alive tests)
//   GET  /.well-known/oauth-authorization-server/tenants/NAME, /tenants/NAME/.well-known/openid-configuration
//                           discovery documents of test issuers ISSUER/tenants/NAME (see README.md)
// Token requests are recorded with their parameters (never a client secret or assertion) and
// the id of the TLS connection they came on; discovery requests with their path and status.
//   *    /fault/KIND/token  token endpoints that misbehave on purpose (see README.md)
//
// Usage: node server.js --config FILE.json
// FILE.json: {"port": 0, "host": "127.0.0.1", "cert": PEM path, "key": PEM path,
//             "clients": [{"client_id", "client_secret", "token_endpoint_auth_method", "scope"}],
//               (a "private_key_jwt" client has "jwks": {"keys": [JWK, ...]} instead of a
//               client_secret, and optionally "token_endpoint_auth_signing_alg")
//             "ready_file": path, "token_ttl": seconds (optional, default 300)}
//
// Logs one line per request to stdout, never a header value, a body or a query string (those
// may carry client secrets and access tokens).
//
// ESM that node 18 and 20 both run; oidc-provider is pinned to an exact 8.x version, and the
// deep import of its client_credentials grant handler relies on that pin.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';
import {
  handler as clientCredentialsHandler,
  parameters as clientCredentialsParameters,
} from 'oidc-provider/lib/actions/grants/client_credentials.js';

const MAX_RECORDED_REQUESTS = 200;
const MAX_TEST_BODY = 64 * 1024;
const BIGBODY_SIZE = 1024 * 1024;
const FAULT_KINDS = new Set(['html', '500', '503', 'redirect', 'hang', 'slow', 'json', 'bigbody', '429', 'truncated',
  'empty', 'flaky']);
const MAX_FLAKY_TIMES = 200;

function die(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  let configPath;
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--config' && i + 1 < argv.length) {
      configPath = argv[i + 1];
      i += 1;
    } else if (argv[i].startsWith('--config=')) {
      configPath = argv[i].slice('--config='.length);
    } else {
      die(`unknown argument ${JSON.stringify(argv[i])}; usage: node server.js --config FILE.json`);
    }
  }
  if (!configPath) {
    die('usage: node server.js --config FILE.json');
  }
  return configPath;
}

function loadConfig(configPath) {
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (err) {
    die(`cannot read config ${configPath}: ${err.message}`);
  }
  const port = cfg.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    die('config: port must be an integer 0..65535');
  }
  for (const k of ['cert', 'key', 'ready_file']) {
    if (typeof cfg[k] !== 'string' || cfg[k] === '') {
      die(`config: ${k} must be a non-empty string`);
    }
  }
  if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) {
    die('config: clients must be a non-empty array');
  }
  const seen = new Set();
  for (const c of cfg.clients) {
    if (typeof c.client_id !== 'string' || c.client_id === '' || seen.has(c.client_id)) {
      die('config: every client needs a unique non-empty client_id');
    }
    seen.add(c.client_id);
    const m = c.token_endpoint_auth_method ?? 'client_secret_basic';
    if (m === 'private_key_jwt') {
      if (!c.jwks || !Array.isArray(c.jwks.keys) || c.jwks.keys.length === 0 || c.client_secret !== undefined) {
        die(`config: client ${JSON.stringify(c.client_id)}: token_endpoint_auth_method private_key_jwt needs "jwks": {"keys": [...]} and no client_secret`);
      }
    } else {
      if (typeof c.client_secret !== 'string' || c.client_secret === '') {
        die(`config: client ${JSON.stringify(c.client_id)} needs a client_secret`);
      }
      if (m !== 'client_secret_basic' && m !== 'client_secret_post') {
        die(`config: client ${JSON.stringify(c.client_id)}: token_endpoint_auth_method must be client_secret_basic, client_secret_post or private_key_jwt`);
      }
    }
    if (c.scope !== undefined && typeof c.scope !== 'string') {
      die(`config: client ${JSON.stringify(c.client_id)}: scope must be a space-separated string`);
    }
  }
  const ttl = cfg.token_ttl ?? 300;
  if (!Number.isInteger(ttl) || ttl < 1) {
    die('config: token_ttl must be a positive integer (seconds)');
  }
  return {
    port,
    host: cfg.host ?? '127.0.0.1',
    cert: cfg.cert,
    key: cfg.key,
    clients: cfg.clients,
    readyFile: cfg.ready_file,
    tokenTtl: ttl,
  };
}

function log(fields) {
  const parts = [new Date().toISOString()];
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && v !== null) {
      parts.push(`${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`);
    }
  }
  process.stdout.write(`${parts.join(' ')}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

// Form-urlencoded decoding (RFC 6749 §2.3.1 / Appendix B); null when malformed.
function formDecode(s) {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    return null;
  }
}

// What the Authorization header says, without keeping the secret.
function basicClientId(header) {
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0].toLowerCase() !== 'basic') {
    return { scheme: 'other', clientId: null };
  }
  const decoded = Buffer.from(parts[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) {
    return { scheme: 'basic', clientId: null };
  }
  return { scheme: 'basic', clientId: formDecode(decoded.slice(0, i)) };
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= limit) {
        chunks.push(c);
      }
    });
    req.on('end', () => {
      if (size > limit) {
        reject(new Error('body too large'));
      } else {
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', reject);
  });
}

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}

function sendText(res, status, type, text, extraHeaders = {}) {
  const body = Buffer.from(text);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length, ...extraHeaders });
  res.end(body);
}

function writeReadyFile(file, obj) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, `${JSON.stringify(obj)}\n`, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

const configPath = parseArgs(process.argv.slice(2));
const cfg = loadConfig(configPath);

let tlsOptions;
try {
  tlsOptions = { cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) };
} catch (err) {
  die(`cannot read cert/key: ${err.message}`);
}

// ---------------------------------------------------------------- state for /_test

const stats = {
  tokenRequests: 0,
  byClient: new Map(),
  byAuth: {
    basic: 0, post: 0, both: 0, none: 0, other: 0, private_key_jwt: 0,
  },
  requests: [],
  faults: new Map(),
  flaky: new Map(), // key -> {requests, at_ms: [Date.now() of each, last MAX_FLAKY_TIMES]}
  connections: 0, // TLS connections accepted
  discovery: [], // {path, status, conn} of each /.well-known/ request
};
let tokenDelayMs = 0;
let slowCounter = 0;

function resetStats() {
  stats.tokenRequests = 0;
  stats.byClient.clear();
  for (const k of Object.keys(stats.byAuth)) {
    stats.byAuth[k] = 0;
  }
  stats.requests = [];
  stats.faults.clear();
  stats.flaky.clear();
  stats.connections = 0;
  stats.discovery = [];
}

function statsJson() {
  return {
    token_requests: stats.tokenRequests,
    by_client: Object.fromEntries(stats.byClient),
    by_auth: { ...stats.byAuth },
    both_auth_errors: stats.byAuth.both,
    requests: stats.requests,
    fault_requests: Object.fromEntries(stats.faults),
    flaky: Object.fromEntries(stats.flaky),
    connections: stats.connections,
    discovery_requests: stats.discovery,
    delay_ms: tokenDelayMs,
  };
}

function recordTokenRequest(entry) {
  stats.tokenRequests += 1;
  const key = entry.client_id ?? '';
  stats.byClient.set(key, (stats.byClient.get(key) ?? 0) + 1);
  stats.byAuth[entry.auth] += 1;
  stats.requests.push(entry);
  if (stats.requests.length > MAX_RECORDED_REQUESTS) {
    stats.requests.splice(0, stats.requests.length - MAX_RECORDED_REQUESTS);
  }
}

// The header and claims of a client assertion (RFC 7523), for the request log; never the
// signature. null when it is not a JWS.
function assertionParts(assertion) {
  const parts = typeof assertion === 'string' ? assertion.split('.') : [];
  if (parts.length !== 3) {
    return null;
  }
  try {
    return {
      header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
      claims: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
    };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- HTTPS server

const sockets = new Set();
const hanging = new Set();
let providerCallback = null;
let tokenEndpoint = null;

// Each TLS connection gets an id, so that the stats show which requests shared one.
const connIds = new WeakMap();
let nextConnId = 1;

const server = https.createServer(tlsOptions);
server.on('secureConnection', (sock) => {
  sockets.add(sock);
  connIds.set(sock, nextConnId);
  nextConnId += 1;
  stats.connections += 1;
  sock.on('close', () => { sockets.delete(sock); });
});

function connInfo(sock) {
  return {
    conn: connIds.get(sock) ?? null,
    remote_port: sock?.remotePort ?? null,
    tls_resumed: typeof sock?.isSessionReused === 'function' ? sock.isSessionReused() : null,
  };
}
server.on('tlsClientError', () => { /* a client that gave up on the handshake: nothing to do */ });

async function handleTest(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /_test/stats') {
    sendJson(res, 200, statsJson());
  } else if (route === 'POST /_test/reset') {
    await readBody(req, MAX_TEST_BODY);
    resetStats();
    sendJson(res, 200, { ok: true });
  } else if (route === 'POST /_test/delay') {
    let ms;
    try {
      ({ ms } = JSON.parse((await readBody(req, MAX_TEST_BODY)).toString('utf8')));
    } catch {
      ms = undefined;
    }
    if (!Number.isInteger(ms) || ms < 0) {
      sendJson(res, 400, { error: 'body must be {"ms": non-negative integer}' });
      return;
    }
    tokenDelayMs = ms;
    sendJson(res, 200, { ok: true, delay_ms: ms });
  } else if (route === 'POST /_test/drop_connections') {
    await readBody(req, MAX_TEST_BODY);
    let dropped = 0;
    for (const sock of sockets) {
      if (sock !== req.socket) {
        sock.destroy();
        dropped += 1;
      }
    }
    sendJson(res, 200, { ok: true, dropped }, { Connection: 'close' });
  } else if (route === 'GET /_test/introspect') {
    const token = url.searchParams.get('token');
    if (!token) {
      sendJson(res, 400, { error: 'token query parameter required' });
      return;
    }
    // eslint-disable-next-line no-use-before-define
    const found = await provider.ClientCredentials.find(token);
    if (!found || found.isExpired) {
      sendJson(res, 200, { active: false });
      return;
    }
    sendJson(res, 200, {
      active: true,
      client_id: found.clientId,
      scope: found.scope ?? '',
      aud: found.aud ?? null,
      exp: found.exp,
      iat: found.iat,
      token_type: found.tokenType,
    });
  } else {
    sendJson(res, 404, { error: 'no such test endpoint' });
  }
}

// The answer of a fault endpoint that refuses for now: STATUS, a Retry-After header when the
// query has retry_after (sent verbatim: seconds, an HTTP-date, or garbage on purpose), and a
// JSON {"error": CODE} body when it has error, plain text otherwise.
function sendRefusal(res, url, status) {
  const headers = {};
  const retryAfter = url.searchParams.get('retry_after');
  if (retryAfter !== null && retryAfter !== '') {
    headers['Retry-After'] = retryAfter;
  }
  const code = url.searchParams.get('error');
  if (code) {
    sendJson(res, status, { error: code }, headers);
  } else {
    sendText(res, status, 'text/plain', `${http.STATUS_CODES[status] ?? 'Error'}\n`, headers);
  }
}

async function handleFault(req, res, url, kind) {
  stats.faults.set(kind, (stats.faults.get(kind) ?? 0) + 1);
  // Take the whole request first, as a real server would, so that the client never sees a reset
  // while it is still sending.
  try {
    await readBody(req, MAX_TEST_BODY);
  } catch {
    sendText(res, 413, 'text/plain', 'request body too large\n');
    return;
  }
  switch (kind) {
    case 'html':
      sendText(res, 200, 'text/html; charset=utf-8',
        '<html><head><title>Sign in</title></head><body><p>Please sign in.</p></body></html>\n');
      break;
    case '500':
      sendText(res, 500, 'text/plain', 'Internal Server Error\n');
      break;
    case '503':
      if (url.searchParams.has('retry_after')) {
        sendRefusal(res, url, 503);
      } else {
        sendText(res, 503, 'text/plain', 'Service Unavailable\n', { 'Retry-After': '1' });
      }
      break;
    case '429':
      sendRefusal(res, url, 429);
      break;
    case 'truncated': {
      // A 200 whose body stops half way: Content-Length promises more than is sent before the
      // connection is closed.
      const body = Buffer.from('{"access_token":"fault-truncated","token_type":"Bearer","expires_in":300}');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      res.write(body.subarray(0, 20));
      setTimeout(() => { res.destroy(); }, 50);
      break;
    }
    case 'empty':
      sendText(res, 200, 'application/json', '');
      break;
    case 'flaky': {
      // Per key: AFTER tokens first, then FAIL refusals (status, retry_after, error as for 429),
      // then tokens again.
      const key = url.searchParams.get('key') ?? '';
      const after = Number.parseInt(url.searchParams.get('after') ?? '0', 10);
      const fail = Number.parseInt(url.searchParams.get('fail') ?? '1', 10);
      const status = Number.parseInt(url.searchParams.get('status') ?? '503', 10);
      const expiresIn = Number.parseInt(url.searchParams.get('expires_in') ?? '300', 10);
      if (![after, fail, expiresIn].every((v) => Number.isInteger(v) && v >= 0)
          || !Number.isInteger(status) || status < 400 || status > 599) {
        sendJson(res, 400, { error: 'after, fail, expires_in: non-negative integers; status 400..599' });
        return;
      }
      const entry = stats.flaky.get(key) ?? { requests: 0, at_ms: [] };
      entry.requests += 1;
      entry.at_ms.push(Date.now());
      if (entry.at_ms.length > MAX_FLAKY_TIMES) {
        entry.at_ms.splice(0, entry.at_ms.length - MAX_FLAKY_TIMES);
      }
      stats.flaky.set(key, entry);
      const n = entry.requests;
      if (n > after && n <= after + fail) {
        sendRefusal(res, url, status);
      } else {
        sendJson(res, 200, { access_token: `fault-flaky-${key}-${n}`, token_type: 'Bearer', expires_in: expiresIn });
      }
      break;
    }
    case 'redirect':
      res.writeHead(302, { Location: tokenEndpoint, 'Content-Length': 0 });
      res.end();
      break;
    case 'hang':
      // Never answer; the socket stays open until the client gives up or we exit.
      hanging.add(res);
      res.on('close', () => { hanging.delete(res); });
      break;
    case 'slow': {
      const ms = Number.parseInt(url.searchParams.get('ms') ?? '0', 10);
      if (!Number.isInteger(ms) || ms < 0) {
        sendJson(res, 400, { error: 'ms must be a non-negative integer' });
        return;
      }
      slowCounter += 1;
      const n = slowCounter;
      await sleep(ms);
      if (!res.destroyed) {
        sendJson(res, 200, { access_token: `fault-slow-${n}`, token_type: 'Bearer', expires_in: 300 });
      }
      break;
    }
    case 'json': {
      const body = url.searchParams.get('body') ?? '';
      const status = Number.parseInt(url.searchParams.get('status') ?? '200', 10);
      if (!Number.isInteger(status) || status < 100 || status > 599) {
        sendJson(res, 400, { error: 'status must be 100..599' });
        return;
      }
      sendText(res, status, 'application/json', body, { 'Cache-Control': 'no-store' });
      break;
    }
    case 'bigbody': {
      const head = '{"access_token":"';
      const tail = '","token_type":"Bearer","expires_in":300}';
      const body = head + 'A'.repeat(BIGBODY_SIZE - head.length - tail.length) + tail;
      sendText(res, 200, 'application/json', body);
      break;
    }
    default:
      throw new Error(`unhandled fault kind ${kind}`);
  }
}

// Discovery documents of test issuers ISSUER/tenants/NAME whose token endpoint is the real
// one (RFC 8414 at /.well-known/oauth-authorization-server/tenants/NAME, OpenID at
// /tenants/NAME/.well-known/openid-configuration):
//   nopost       RFC 8414 only; token_endpoint_auth_methods_supported without client_secret_post
//   oidconly     OpenID only (the RFC 8414 URL is 404), no methods list
//   wrongissuer  RFC 8414 only, naming another issuer (RFC 8414 §3.3 says: do not use it)
//   down         503 at both URLs
async function handleTenant(req, res, name, rfc8414) {
  await readBody(req, MAX_TEST_BODY);
  // eslint-disable-next-line no-use-before-define
  const tenantIssuer = `${issuer}/tenants/${name}`;
  const doc = {
    issuer: tenantIssuer,
    token_endpoint: tokenEndpoint,
    grant_types_supported: ['client_credentials'],
  };
  if (name === 'nopost' && rfc8414) {
    sendJson(res, 200, { ...doc, token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'] });
  } else if (name === 'oidconly' && !rfc8414) {
    sendJson(res, 200, doc);
  } else if (name === 'wrongissuer' && rfc8414) {
    sendJson(res, 200, { ...doc, issuer: 'https://issuer.invalid' });
  } else if (name === 'down') {
    sendText(res, 503, 'text/plain', 'Service Unavailable\n');
  } else {
    sendJson(res, 404, { error: 'not_found' });
  }
}

server.on('request', (req, res) => {
  const started = Date.now();
  const url = new URL(req.url, 'https://127.0.0.1');
  res.on('finish', () => {
    log({
      method: req.method,
      path: url.pathname,
      status: res.statusCode,
      ms: Date.now() - started,
      client_id: res.locals?.clientId,
      auth: res.locals?.auth,
    });
  });
  res.on('close', () => {
    if (!res.writableFinished) {
      log({ method: req.method, path: url.pathname, status: 'none', note: 'connection closed before an answer' });
    }
  });
  res.locals = {};
  if (url.pathname.includes('/.well-known/')) {
    res.on('finish', () => {
      stats.discovery.push({ path: url.pathname, status: res.statusCode, ...connInfo(req.socket) });
      if (stats.discovery.length > MAX_RECORDED_REQUESTS) {
        stats.discovery.splice(0, stats.discovery.length - MAX_RECORDED_REQUESTS);
      }
    });
  }

  const fault = /^\/fault\/([^/]+)\/token$/.exec(url.pathname);
  const tenant = /^\/\.well-known\/oauth-authorization-server\/tenants\/([a-z]+)$/.exec(url.pathname)
    ?? /^\/tenants\/([a-z]+)\/\.well-known\/openid-configuration$/.exec(url.pathname);
  let work;
  if (url.pathname.startsWith('/_test/')) {
    work = handleTest(req, res, url);
  } else if (tenant && tokenEndpoint) {
    work = handleTenant(req, res, tenant[1], url.pathname.startsWith('/.well-known/'));
  } else if (fault && FAULT_KINDS.has(fault[1])) {
    work = handleFault(req, res, url, fault[1]);
  } else if (providerCallback) {
    providerCallback(req, res);
    return;
  } else {
    sendText(res, 503, 'text/plain', 'starting\n');
    return;
  }
  work.catch((err) => {
    log({ method: req.method, path: url.pathname, error: err.message });
    if (!res.headersSent) {
      sendJson(res, 500, { error: 'test endpoint failed' });
    } else {
      res.destroy();
    }
  });
});

// Listen first: with port 0 the issuer (which names the port) is known only afterwards.
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(cfg.port, cfg.host, () => {
    server.off('error', reject);
    resolve();
  });
});
const { port } = server.address();
const hostForUrl = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
const issuer = `https://${hostForUrl}:${port}`;

// ---------------------------------------------------------------- the provider

const scopes = new Set();
for (const c of cfg.clients) {
  for (const s of (c.scope ?? '').split(' ')) {
    if (s) {
      scopes.add(s);
    }
  }
}

// Fresh signing key per run: the provider wants one even though client credentials tokens
// here are opaque.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'test-idp' };

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.token_endpoint_auth_method === 'private_key_jwt'
      ? {
        jwks: c.jwks,
        ...(c.token_endpoint_auth_signing_alg
          ? { token_endpoint_auth_signing_alg: c.token_endpoint_auth_signing_alg } : {}),
      }
      : { client_secret: c.client_secret }),
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: c.scope ?? '',
  })),
  // private_key_jwt (RFC 7523 §2.2): the algorithms credagent signs with. The assertion's
  // audience may be the issuer or the token endpoint URL (oidc-provider accepts both).
  enabledJWA: { clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256'] },
  scopes: [...scopes],
  claims: { openid: ['sub'] },
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    // RFC 8707: resource indicators under https://rs.example/ are resource servers whose
    // tokens carry that audience and the client's registered scopes; any other is
    // invalid_target. Without a resource parameter nothing changes.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo: (ctx, resourceIndicator, client) => {
        if (!resourceIndicator.startsWith('https://rs.example/')) {
          throw new errors.InvalidTarget('unknown resource server');
        }
        return {
          scope: client.scope ?? '', audience: resourceIndicator, accessTokenFormat: 'opaque', accessTokenTTL: cfg.tokenTtl,
        };
      },
    },
  },
  ttl: { ClientCredentials: cfg.tokenTtl },
  findAccount: () => undefined,
  renderError(ctx, out) {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});

// oidc-provider 8 checks a requested scope against the client's registration only when the
// scope is one that the server knows; an unknown scope would be granted. A real server refuses
// both, so this wraps the provider's own handler (after client authentication) with that check.
provider.registerGrantType('client_credentials', async (ctx, next) => {
  const allowed = new Set((ctx.oidc.client.scope ?? '').split(' ').filter(Boolean));
  const requested = (ctx.oidc.params.scope ?? '').split(' ').filter(Boolean);
  for (const s of requested) {
    if (!allowed.has(s)) {
      throw new errors.InvalidScope('requested scope is not allowed', s);
    }
  }
  return clientCredentialsHandler(ctx, next);
}, clientCredentialsParameters);

provider.on('server_error', (ctx, err) => {
  log({ event: 'server_error', path: ctx.path, error: `${err.name}: ${err.message}` });
});

const tokenPath = new URL(provider.urlFor('token')).pathname;
tokenEndpoint = `${issuer}${tokenPath}`;

// Counts and delays the real token endpoint. Runs before the provider's routes; what it reads
// about the body (client_id, whether a client_secret was there, grant_type, scope) comes from
// the provider's own parse, available once the route has run.
provider.use(async (ctx, next) => {
  if (ctx.path !== tokenPath) {
    await next();
    return;
  }
  const header = ctx.get('authorization');
  await next();
  const body = (ctx.oidc && ctx.oidc.body) || {};
  const fromHeader = header ? basicClientId(header) : null;
  const bodySecret = typeof body.client_secret === 'string';
  const bodyAssertion = typeof body.client_assertion === 'string';
  const assertion = bodyAssertion ? assertionParts(body.client_assertion) : null;
  let auth;
  if ((fromHeader ? 1 : 0) + (bodySecret ? 1 : 0) + (bodyAssertion ? 1 : 0) > 1) {
    auth = 'both';
  } else if (fromHeader) {
    auth = fromHeader.scheme;
  } else if (bodySecret) {
    auth = 'post';
  } else if (bodyAssertion) {
    auth = 'private_key_jwt';
  } else {
    auth = 'none';
  }
  const clientId = fromHeader?.clientId ?? (typeof body.client_id === 'string' ? body.client_id : null)
    ?? (typeof assertion?.claims?.sub === 'string' ? assertion.claims.sub : null);
  // Every body parameter but the credentials (a repeated one is an array, in order).
  const params = {};
  for (const [k, v] of Object.entries(body)) {
    if (k !== 'client_secret' && k !== 'client_assertion') {
      params[k] = v;
    }
  }
  const entry = {
    method: ctx.method,
    path: ctx.path,
    ...connInfo(ctx.req.socket),
    params,
    client_id: clientId,
    auth,
    both: auth === 'both',
    grant_type: typeof body.grant_type === 'string' ? body.grant_type : null,
    scope: typeof body.scope === 'string' ? body.scope : null,
    content_type: ctx.get('content-type') || null,
    status: ctx.status,
    error: (ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) ? (ctx.body.error ?? null) : null,
    // private_key_jwt: what the assertion said (its signature is never recorded).
    client_assertion_type: typeof body.client_assertion_type === 'string' ? body.client_assertion_type : null,
    assertion: assertion ? {
      alg: assertion.header.alg ?? null,
      typ: assertion.header.typ ?? null,
      kid: assertion.header.kid ?? null,
      iss: assertion.claims.iss ?? null,
      sub: assertion.claims.sub ?? null,
      aud: assertion.claims.aud ?? null,
      iat: assertion.claims.iat ?? null,
      exp: assertion.claims.exp ?? null,
      jti: assertion.claims.jti ?? null,
    } : null,
  };
  recordTokenRequest(entry);
  ctx.res.locals.clientId = clientId ?? undefined;
  ctx.res.locals.auth = auth;
  if (tokenDelayMs > 0) {
    await sleep(tokenDelayMs);
  }
});

providerCallback = provider.callback();

writeReadyFile(cfg.readyFile, {
  port, token_endpoint: tokenEndpoint, issuer, pid: process.pid,
});
log({ event: 'listening', issuer, token_endpoint: tokenEndpoint, clients: cfg.clients.length });

// ---------------------------------------------------------------- shutdown

let stopping = false;
function shutdown(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  log({ event: 'stopping', signal });
  for (const res of hanging) {
    res.destroy();
  }
  server.close(() => {
    log({ event: 'stopped' });
    process.exit(0);
  });
  for (const sock of sockets) {
    sock.destroy();
  }
  // Pending timers (delays, slow answers) must not keep the process alive.
  setTimeout(() => { process.exit(0); }, 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
