// The example mini-program against a real `locallife demo`, the way the README's
// "Your first notification" goes: the demo's printed merchant and rider tokens in the
// example's config, both pages loaded (in Node, under the wx stand-in and
// miniprogram-host.js), the rider online with a position sent over the socket, then the
// printed order and simulate-payment commands run as printed: the merchant page gets
// order.paid (played, acked), the rider page order.recommend from where its last
// `location` put it, accepts it, and goes offline (4003: the SDK stops).
//
// Needs the locallife binary and a PostgreSQL role that may create databases:
//   LOCALLIFE_BIN=target/debug/locallife \
//   TEST_DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife \
//   npm run test:e2e
// (scripts/test.sh runs it after the Rust tests). Without them it is skipped under
// `npm test`, and fails under `npm run test:e2e`, which asks for it.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const net = require('net');
const path = require('path');
const readline = require('readline');
const { spawn, execFileSync, execFile } = require('child_process');
const { createWx } = require('./wx-standin');
const { loadExample, withScreen, eventually } = require('./miniprogram-host');

const BIN = process.env.LOCALLIFE_BIN;
const ADMIN_DB = process.env.TEST_DATABASE_URL;
const ASKED = process.env.npm_lifecycle_event === 'test:e2e';
const JWT_SECRET = '0123456789abcdef0123456789abcdef';
// The demo kitchen is at 31.2304, 121.4737; 0.0009° of latitude is about 100 m.
const NEAR = { latitude: 31.2313, longitude: 121.4737 };
const FARTHER = { latitude: 31.232, longitude: 121.4737 };

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A database of its own, named as the Rust tests name theirs (ll_test_<unix s>_<random>),
 * so that one left behind by a killed run is swept by the next. */
function createDatabase() {
  const name = `ll_test_${Math.floor(Date.now() / 1000)}_${Math.random().toString(16).slice(2, 10)}`;
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', ADMIN_DB, '-c', `CREATE DATABASE ${name}`]);
  const url = new URL(ADMIN_DB);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => execFileSync('psql', ['-X', '-q', ADMIN_DB, '-c', `DROP DATABASE IF EXISTS ${name}`]),
  };
}

/** Starts `locallife demo` and reads what it prints up to "Ready.". */
async function startDemo(databaseUrl, port) {
  const demo = spawn(BIN, ['demo'], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl,
      JWT_SECRET,
      LISTEN_ADDR: `127.0.0.1:${port}`,
      METRICS_ADDR: '127.0.0.1:0',
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Its log, shown only if it does not get ready.
  let log = '';
  demo.stderr.on('data', (chunk) => {
    log = (log + chunk).slice(-4000);
  });
  const printed = [];
  const lines = readline.createInterface({ input: demo.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      demo.kill('SIGKILL');
      reject(new Error(`demo not ready in 60 s: ${printed.join('\n')}\n${log}`));
    }, 60_000);
    demo.once('exit', (code) => reject(new Error(`demo exited (${code}): ${printed.join('\n')}\n${log}`)));
    lines.on('line', (line) => {
      if (line === 'Ready.') {
        clearTimeout(timer);
        resolve();
      } else {
        printed.push(line);
      }
    });
  });
  const token = (role) => {
    const line = printed.find((l) => new RegExp(`^\\s+${role}\\s+user \\d+`).test(l));
    assert.ok(line, `a ${role} line in ${printed.join('\n')}`);
    return line.trim().split(/\s+/).pop();
  };
  const serving = printed[0].match(/serving on (http:\/\/\S+)/);
  assert.ok(serving, printed[0]);
  return {
    process: demo,
    http: serving[1],
    tokens: { merchant: token('merchant'), rider: token('rider'), platform: token('platform') },
    order: printed.find((l) => l.startsWith('order=$(curl')),
    pay: printed.find((l) => l.includes(' simulate-payment ')),
    stop: () =>
      new Promise((resolve) => {
        if (demo.exitCode !== null) return resolve();
        demo.once('exit', resolve);
        demo.kill('SIGTERM');
      }),
  };
}

async function get(http, path, token) {
  const res = await fetch(`${http}${path}`, { headers: { authorization: `Bearer ${token}` } });
  assert.strictEqual(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

test(
  'the example pages against locallife demo: the merchant hears order.paid, the rider gets order.recommend from where it said it is',
  { skip: !(BIN && ADMIN_DB) && !ASKED && 'set LOCALLIFE_BIN and TEST_DATABASE_URL (scripts/test.sh does)', timeout: 180_000 },
  async (t) => {
    assert.ok(BIN && ADMIN_DB, 'LOCALLIFE_BIN and TEST_DATABASE_URL must be set');
    // Undone last first: pages, globals, the demo, its database.
    const undo = [];
    t.after(async () => {
      for (const step of undo.reverse()) await step();
    });
    const db = createDatabase();
    undo.push(() => db.drop());
    const demo = await startDemo(db.url, await freePort());
    undo.push(() => demo.stop());
    assert.ok(demo.order && demo.pay, 'the demo printed the order and payment commands');

    // config.js as the README says to fill it in: the printed address and tokens.
    const config = {
      API_BASE: demo.http,
      WS_URL: `${demo.http.replace(/^http/, 'ws')}/v1/ws`,
      TOKENS: { merchant: demo.tokens.merchant, rider: demo.tokens.rider },
      RIDER_POSITION: null,
      LOCATION_EVERY_S: 3600,
    };
    const { wx } = createWx({ backends: [new URL(demo.http).host] });
    const screen = withScreen(wx);
    const example = loadExample({ wx, config });
    undo.push(() => example.unload());
    const merchant = example.page('pages/merchant/index');
    const rider = example.page('pages/rider/index');
    undo.push(() => {
      merchant.onUnload();
      rider.onUnload();
    });

    merchant.onLoad();
    screen.location = FARTHER;
    await rider.onLoad();
    await eventually('both pages connected', () => merchant.data.status === 'open' && rider.data.status === 'open');
    assert.strictEqual(rider.data.note, '');

    // The rider moves; its position goes over the socket, not through going online.
    screen.location = NEAR;
    assert.strictEqual(await rider.sendLocation(), true);
    await eventually('the server has the position sent over the socket', async () => {
      const me = await get(demo.http, '/v1/me', demo.tokens.rider);
      return me.rider.online && me.rider.lat === NEAR.latitude && me.rider.lng === NEAR.longitude;
    });

    // The README's step: the printed order and payment commands, as printed.
    const placed = await new Promise((resolve, reject) =>
      execFile('bash', ['-c', `set -e\n${demo.order}\n${demo.pay}\n`], (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const orderId = JSON.parse(placed.split('\n')[0]).id;
    assert.ok(Number.isInteger(orderId), placed);

    const [paid] = await eventually('order.paid on the merchant page', () => merchant.data.orders.length && merchant.data.orders);
    assert.strictEqual(paid.order_id, orderId);
    assert.deepStrictEqual(screen.ui.filter((u) => u.call === 'play'), [{ call: 'play', src: '/assets/new-order.mp3' }]);
    await eventually('the merchant page acked it', async () => {
      // The receipt may be written a moment after the delivery: 404 until then.
      const res = await fetch(`${demo.http}/v1/platform/notifications/${paid.message_id}`, {
        headers: { authorization: `Bearer ${demo.tokens.platform}` },
      });
      return res.status === 200 && (await res.json()).recipients.some((r) => r.state === 'acked');
    });

    const [offer] = await eventually('order.recommend on the rider page', () => rider.data.offers.length && rider.data.offers);
    assert.strictEqual(offer.order_id, orderId);
    assert.ok(offer.distance_m >= 90 && offer.distance_m <= 110, `recommended from the socket's position (about 100 m): ${offer.distance_m} m`);

    await rider.accept({ currentTarget: { dataset: { id: String(orderId) } } });
    assert.deepStrictEqual(rider.data.offers, []);
    assert.ok(screen.ui.some((u) => u.call === 'showToast' && u.title === `已接单 #${orderId}`), JSON.stringify(screen.ui));

    // Offline: the server closes the rider's socket with 4003, and the SDK stops.
    await rider.goOffline();
    await eventually(() => `the rider page stopped: ${JSON.stringify(rider.data)}`, () => rider.data.status.startsWith('offline: '));
    assert.strictEqual(rider.client.state(), 'stopped');
    assert.strictEqual(merchant.client.state(), 'open');
  },
);
