'use strict';
// Socket.IO 4 comparison peer for the locallife notification benchmark.
//
// One Socket.IO server per process, WebSocket transport only, sharing work with its
// sibling processes through the Redis Streams adapter. It does the same job as the
// Rust service: a personal room per user, a room per role, notifications published
// over HTTP on any instance reach the user's sockets on whichever instance holds them,
// and clients acknowledge each notification with its id. See README.md for the wire
// protocol a raw WebSocket load generator must speak.

const http = require('node:http');
const { Server } = require('socket.io');
const { createClient } = require('redis');
const { createAdapter } = require('@socket.io/redis-streams-adapter');

function intEnv(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${name}: expected a whole number, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const PORT = intEnv('PORT', 3000);
const HOST = process.env.HOST || '0.0.0.0';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
// The stream (and the pub/sub channel prefix) name: give parallel runs different names
// so their instances do not see each other's traffic.
const SIO_STREAM = process.env.SIO_STREAM || 'sio-bench';
// Engine.IO heartbeat. The server sends a ping ("2") every PING_INTERVAL_MS and closes
// the socket if the pong ("3") has not come back PING_TIMEOUT_MS later.
const PING_INTERVAL_MS = intEnv('PING_INTERVAL_MS', 25000);
const PING_TIMEOUT_MS = intEnv('PING_TIMEOUT_MS', 60000);
// Adapter tuning; the defaults are the adapter's own.
const SIO_MAX_LEN = intEnv('SIO_MAX_LEN', 10000); // stream trimmed to ~this many entries
const SIO_READ_COUNT = intEnv('SIO_READ_COUNT', 100); // entries per XREAD round trip

const ROLES = new Set(['rider', 'merchant', 'platform']);
const MAX_BODY = 1024 * 1024; // a batch of 1,000 small notifications fits

let acks = 0;

// ---- HTTP API (same server and port as Socket.IO, which only takes /socket.io/) ----

function reply(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function readJson(req, res, then) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      reply(res, 413, { error: 'body too large' });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(res, 400, { error: 'body is not JSON' });
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return reply(res, 400, { error: 'body must be a JSON object' });
    }
    then(body);
  });
}

function onRequest(req, res) {
  const path = req.url.split('?', 1)[0];
  if (req.method === 'GET' && path === '/healthz') {
    // Not ready until the adapter's Redis connections are up: a notification published
    // before this instance reads the stream would never reach its sockets.
    return ready ? reply(res, 200, { ok: true }) : reply(res, 503, { ok: false });
  }
  if (req.method === 'GET' && path === '/stats') {
    return reply(res, 200, { sockets: io.of('/').sockets.size, acks });
  }
  if (req.method === 'POST' && path === '/publish') {
    return readJson(req, res, (body) => {
      if (typeof body.user !== 'string' && typeof body.user !== 'number') {
        return reply(res, 400, { error: 'user is required' });
      }
      io.to(`u:${body.user}`).emit('notification', { ...body, event: 'bench' });
      reply(res, 202);
    });
  }
  if (req.method === 'POST' && path === '/publish-batch') {
    // The same as /publish for each item of {"items": [...]}: one HTTP request for many
    // notifications, as the Rust service's /v1/platform/notifications/batch.
    return readJson(req, res, (body) => {
      const items = body.items;
      if (!Array.isArray(items) || items.length === 0 || items.length > 1000) {
        return reply(res, 400, { error: 'items must hold 1 to 1000 notifications' });
      }
      if (!items.every((i) => i && (typeof i.user === 'string' || typeof i.user === 'number'))) {
        return reply(res, 400, { error: 'every item needs a user' });
      }
      for (const item of items) {
        io.to(`u:${item.user}`).emit('notification', { ...item, event: 'bench' });
      }
      reply(res, 202);
    });
  }
  if (req.method === 'POST' && path === '/broadcast') {
    return readJson(req, res, (body) => {
      if (!ROLES.has(body.role)) {
        return reply(res, 400, { error: 'role must be rider, merchant or platform' });
      }
      io.to(`role:${body.role}`).emit('notification', { ...body, event: 'bench' });
      reply(res, 202);
    });
  }
  reply(res, 404, { error: 'not found' });
}

// ---- Redis + adapter ----

const redisClient = createClient({ url: REDIS_URL });
let lastRedisError = 0;
function onRedisError(err) {
  // node-redis reconnects by itself; say so at most once a second.
  const now = Date.now();
  if (now - lastRedisError > 1000) {
    lastRedisError = now;
    console.error(`redis: ${err.message}`);
  }
}
redisClient.on('error', onRedisError);

// The adapter duplicates our client twice (one connection blocked in XREAD on the
// stream, one for pub/sub). Count them coming up to know when we are ready.
let ready = false;
let adapterConnections = 0;
const duplicate = redisClient.duplicate.bind(redisClient);
redisClient.duplicate = (...args) => {
  const c = duplicate(...args);
  c.once('ready', () => {
    adapterConnections += 1;
    // The first XREAD / SUBSCRIBE go out in the same tick as 'ready' resolves connect().
    if (adapterConnections >= 2) setImmediate(() => (ready = true));
  });
  return c;
};

// ---- Socket.IO ----

const httpServer = http.createServer(onRequest);

const io = new Server(httpServer, {
  transports: ['websocket'], // no long-polling: a raw WebSocket client can drive it
  perMessageDeflate: false,
  pingInterval: PING_INTERVAL_MS,
  pingTimeout: PING_TIMEOUT_MS,
  maxHttpBufferSize: 4096, // largest incoming frame, like WS_MAX_FRAME in the Rust service
  serveClient: false,
});

io.use((socket, next) => {
  // No JWT verification on purpose: the benchmark measures delivery, not auth. The
  // client names itself in the namespace CONNECT packet: 40{"user":"1","role":"rider"}.
  const { user, role } = socket.handshake.auth || {};
  if ((typeof user !== 'string' && typeof user !== 'number') || user === '' || !ROLES.has(role)) {
    return next(new Error('auth needs {user, role} with role rider|merchant|platform'));
  }
  socket.data.user = String(user);
  socket.data.role = role;
  next();
});

io.on('connection', (socket) => {
  socket.join([`u:${socket.data.user}`, `role:${socket.data.role}`]);
  // Plain event, like our protocol's ack: 42["ack",{"id":"..."}]
  socket.on('ack', () => {
    acks += 1;
  });
});

async function main() {
  await redisClient.connect();
  io.adapter(
    createAdapter(redisClient, {
      streamName: SIO_STREAM,
      channelPrefix: SIO_STREAM,
      maxLen: SIO_MAX_LEN,
      readCount: SIO_READ_COUNT,
    }),
  );
  httpServer.listen(PORT, HOST, () => {
    console.log(
      `socket.io peer on ${HOST}:${PORT} stream=${SIO_STREAM} redis=${REDIS_URL} ` +
        `ping=${PING_INTERVAL_MS}/${PING_TIMEOUT_MS}ms`,
    );
  });
}

function stop() {
  httpServer.close();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

main().catch((err) => {
  console.error(`startup failed: ${err.message}`);
  process.exit(1);
});
