'use strict';
// Checks two running peers that share Redis (and SIO_STREAM): a notification published
// on B reaches user 7's socket on A, and the ack is counted on A — first with
// socket.io-client, then with a raw WebSocket speaking the frames README.md describes.
// Starts no server itself.
//
//   node check.js [PORT_A] [PORT_B]        (defaults 3001 3002; HOST env, default 127.0.0.1)
//
// The heartbeat part (server "2", client "3", and a silent client being dropped) runs
// when the servers' pingInterval + pingTimeout is at most 10 s, e.g. servers started
// with PING_INTERVAL_MS=1000 PING_TIMEOUT_MS=1000; otherwise it is skipped and said so.

const { io } = require('socket.io-client');
const WebSocket = require('ws');

const HOST = process.env.HOST || '127.0.0.1';
const A = Number(process.argv[2] || 3001);
const B = Number(process.argv[3] || 3002);
const USER = '7';

let passed = 0;
let failed = 0;
function ok(cond, what) {
  if (cond) {
    passed += 1;
    console.log(`ok   ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL ${what}`);
  }
  return cond;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function http(port, method, path, body) {
  const res = await fetch(`http://${HOST}:${port}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function stats(port) {
  return (await http(port, 'GET', '/stats')).json;
}

async function waitHealthy(port) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await http(port, 'GET', '/healthz')).status === 200) return true;
    } catch {}
    await sleep(100);
  }
  return false;
}

// Polls A's /stats until pred holds (acks are counted asynchronously).
async function waitStats(port, pred) {
  let s;
  for (let i = 0; i < 50; i++) {
    s = await stats(port);
    if (pred(s)) return s;
    await sleep(20);
  }
  return s;
}

// ---- raw WebSocket helper: a queue of text frames ----
function rawClient(port) {
  const ws = new WebSocket(`ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  const waiters = [];
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  ws.on('message', (data, isBinary) => {
    const f = isBinary ? data : data.toString('utf8');
    const w = waiters.shift();
    if (w) w(f);
    else frames.push(f);
  });
  ws.next = (ms, what) =>
    withTimeout(
      frames.length ? Promise.resolve(frames.shift()) : new Promise((r) => waiters.push(r)),
      ms,
      what,
    );
  ws.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

async function checkSocketIoClient(base) {
  console.log(`# socket.io-client on A=${A}, publish on B=${B}`);
  const socket = io(`http://${HOST}:${A}`, {
    transports: ['websocket'],
    auth: { user: USER, role: 'rider' },
    reconnection: false,
  });
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      }),
      5000,
      'socket.io connect',
    );
    ok(true, 'socket.io-client connected to A');
    const s1 = await stats(A);
    ok(s1.sockets === base.sockets + 1, `A /stats sockets=${s1.sockets} (was ${base.sockets})`);

    const id = `sio-${Date.now()}`;
    const got = new Promise((resolve) => socket.once('notification', resolve));
    const sentAt = Date.now();
    const pub = await http(B, 'POST', '/publish', { user: USER, id, sent_at: sentAt });
    ok(pub.status === 202, `POST /publish on B -> ${pub.status}`);
    const n = await withTimeout(got, 5000, 'notification on A');
    const latency = Date.now() - sentAt;
    ok(
      n.id === id && n.user === USER && n.sent_at === sentAt && n.event === 'bench',
      `notification on A: ${JSON.stringify(n)} (${latency} ms after the POST)`,
    );
    socket.emit('ack', { id: n.id });
    const s2 = await waitStats(A, (s) => s.acks === base.acks + 1);
    ok(s2.acks === base.acks + 1, `A /stats acks=${s2.acks} (was ${base.acks})`);

    // role broadcast from B reaches the rider on A
    const bid = `bc-${Date.now()}`;
    const gotB = new Promise((resolve) => socket.once('notification', resolve));
    const bc = await http(B, 'POST', '/broadcast', { role: 'rider', id: bid, sent_at: Date.now() });
    ok(bc.status === 202, `POST /broadcast on B -> ${bc.status}`);
    const nb = await withTimeout(gotB, 5000, 'broadcast on A');
    ok(nb.id === bid && nb.role === 'rider' && nb.event === 'bench', `broadcast on A: ${JSON.stringify(nb)}`);
  } finally {
    socket.disconnect();
  }
}

async function checkRaw(base) {
  console.log(`# raw WebSocket on A=${A}, publish on B=${B}`);
  const ws = rawClient(A);
  try {
    await withTimeout(ws.opened, 5000, 'raw open');

    // Engine.IO open packet: 0{"sid":...,"upgrades":[],"pingInterval":...,"pingTimeout":...,"maxPayload":...}
    const open = await ws.next(5000, 'open packet');
    console.log(`     <- ${open}`);
    const hs = open[0] === '0' ? JSON.parse(open.slice(1)) : {};
    ok(
      typeof hs.sid === 'string' && Array.isArray(hs.upgrades) && hs.upgrades.length === 0 &&
        Number.isInteger(hs.pingInterval) && Number.isInteger(hs.pingTimeout) && Number.isInteger(hs.maxPayload),
      'server open packet 0{sid,upgrades:[],pingInterval,pingTimeout,maxPayload}',
    );

    // Socket.IO CONNECT to the main namespace with auth
    const connect = `40${JSON.stringify({ user: USER, role: 'rider' })}`;
    console.log(`     -> ${connect}`);
    ws.send(connect);
    const connected = await ws.next(5000, 'namespace connect reply');
    console.log(`     <- ${connected}`);
    const cj = connected.startsWith('40') ? JSON.parse(connected.slice(2)) : {};
    ok(typeof cj.sid === 'string' && cj.sid !== hs.sid, 'server 40{"sid":...} (a Socket.IO sid, not the Engine.IO one)');
    const s1 = await waitStats(A, (s) => s.sockets === base.sockets + 1);
    ok(s1.sockets === base.sockets + 1, `A /stats sockets=${s1.sockets}`);

    // Notification published on B
    const id = `raw-${Date.now()}`;
    const sentAt = Date.now();
    const pub = await http(B, 'POST', '/publish', { user: USER, id, sent_at: sentAt });
    ok(pub.status === 202, `POST /publish on B -> ${pub.status}`);
    const ev = await ws.next(5000, 'notification frame');
    const latency = Date.now() - sentAt;
    console.log(`     <- ${ev}`);
    let arr = [];
    if (ev.startsWith('42')) arr = JSON.parse(ev.slice(2));
    ok(
      arr[0] === 'notification' && arr[1] && arr[1].id === id && arr[1].user === USER && arr[1].event === 'bench',
      `frame 42["notification",{...}] (${latency} ms after the POST)`,
    );

    const ack = `42${JSON.stringify(['ack', { id }])}`;
    console.log(`     -> ${ack}`);
    ws.send(ack);
    const s2 = await waitStats(A, (s) => s.acks === base.acks + 1);
    ok(s2.acks === base.acks + 1, `A /stats acks=${s2.acks} (was ${base.acks})`);

    // Role broadcast, raw
    const bid = `rawbc-${Date.now()}`;
    await http(B, 'POST', '/broadcast', { role: 'rider', id: bid, sent_at: Date.now() });
    const bev = await ws.next(5000, 'broadcast frame');
    console.log(`     <- ${bev}`);
    ok(bev.startsWith('42["notification",') && JSON.parse(bev.slice(2))[1].id === bid, 'broadcast frame 42["notification",{role...}]');

    // Heartbeat
    const window = hs.pingInterval + hs.pingTimeout;
    if (window > 10000) {
      console.log(
        `skip heartbeat: server pingInterval+pingTimeout = ${window} ms ` +
          '(start the servers with PING_INTERVAL_MS=1000 PING_TIMEOUT_MS=1000 to run it)',
      );
    } else {
      // answer two pings with "3", and stay connected past the timeout
      for (let i = 1; i <= 2; i++) {
        const t0 = Date.now();
        const ping = await ws.next(hs.pingInterval + 2000, 'ping');
        console.log(`     <- ${ping}   (after ${Date.now() - t0} ms)`);
        ok(ping === '2', `server ping "2" #${i}`);
        console.log('     -> 3');
        ws.send('3');
      }
      await sleep(hs.pingTimeout + 200);
      ok(ws.readyState === WebSocket.OPEN, 'still open after answering pings');

      // a client that never answers is dropped after pingInterval + pingTimeout
      const silent = rawClient(A);
      await withTimeout(silent.opened, 5000, 'silent open');
      await silent.next(5000, 'silent open packet');
      silent.send(`40${JSON.stringify({ user: '8', role: 'rider' })}`);
      await silent.next(5000, 'silent connect reply');
      const t0 = Date.now();
      const closed = await withTimeout(silent.closed, window + 3000, 'silent client dropped');
      const after = Date.now() - t0;
      ok(
        after >= window - 300,
        `client that does not answer "3" is closed after ${after} ms (code ${closed.code}; interval+timeout=${window})`,
      );
    }

    // Bad auth: connect error packet 44{"message":...}
    const bad = rawClient(A);
    await withTimeout(bad.opened, 5000, 'bad open');
    await bad.next(5000, 'bad open packet');
    bad.send('40{"user":"9","role":"nobody"}');
    const err = await bad.next(5000, 'connect error');
    console.log(`     <- ${err}`);
    ok(err.startsWith('44{"message":'), 'bad auth -> 44{"message":...}');
    bad.close();

    // Clean namespace disconnect
    console.log('     -> 41');
    ws.send('41');
    const s3 = await waitStats(A, (s) => s.sockets === base.sockets);
    ok(s3.sockets === base.sockets, `after "41" A /stats sockets=${s3.sockets}`);
  } finally {
    ws.close();
  }
}

async function main() {
  for (const p of [A, B]) {
    if (!ok(await waitHealthy(p), `server on ${p} healthy`)) throw new Error(`no healthy server on ${p}`);
  }
  await checkSocketIoClient(await stats(A));
  await checkRaw(await stats(A));
}

main()
  .catch((e) => {
    failed += 1;
    console.log(`FAIL ${e.message}`);
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
