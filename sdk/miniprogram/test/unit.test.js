// Unit tests of the SDK's pure parts (the behaviour against real replicas is tested
// from tests/api/sdk.rs, through test/harness.js).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { backoffCeiling, backoffDelay, SeenIds, SEEN_MAX, BACKOFF_MAX_MS, createClient } = require('../dist');

test('backoff ceilings double up to the cap, and delays stay under them', () => {
  assert.deepStrictEqual([0, 1, 2, 3].map(backoffCeiling), [500, 1000, 2000, 4000]);
  assert.strictEqual(backoffCeiling(50), BACKOFF_MAX_MS);
  for (let attempt = 0; attempt < 12; attempt++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt);
      assert.ok(d >= 0 && d < backoffCeiling(attempt), `${d} for attempt ${attempt}`);
    }
  }
});

test('seen ids are kept in storage, bounded, and forgotten once expired', () => {
  const map = new Map();
  const storage = { get: (k) => map.get(k), set: (k, v) => map.set(k, v) };
  const seen = new SeenIds(storage);
  for (let i = 0; i < SEEN_MAX + 20; i++) seen.add(`id-${i}`, 1000 + i);
  const again = new SeenIds(storage);
  assert.ok(again.has(`id-${SEEN_MAX + 19}`, 2000));
  assert.ok(!again.has('id-0', 2000), 'the oldest fell out');
  assert.strictEqual(Object.keys(map.values().next().value).length, SEEN_MAX);
  assert.ok(!again.has(`id-${SEEN_MAX + 19}`, 1e15), 'expired');
});

test('connect() twice opens one socket, and close() stops', async () => {
  let sockets = 0;
  const wx = {
    connectSocket() {
      sockets += 1;
      return { send() {}, close() {}, onOpen() {}, onMessage() {}, onClose() {}, onError() {} };
    },
  };
  const client = createClient({
    url: 'wss://example.invalid/v1/ws',
    wx,
    storage: { get() {}, set() {} },
    getToken: async () => 't',
    onNotification() {},
  });
  client.connect();
  client.connect();
  await new Promise((r) => setTimeout(r, 10));
  assert.strictEqual(sockets, 1);
  assert.strictEqual(client.state(), 'connecting');
  client.close();
  assert.strictEqual(client.state(), 'idle');
});

// A socket the test drives: `serverSays` delivers a message, `sent` holds what the
// client wrote, and `failSends` makes WeChat refuse every send from then on.
function scriptedWx() {
  const sockets = [];
  const wx = {
    connectSocket({ url }) {
      const s = {
        url,
        sent: [],
        closedWith: undefined,
        failSends: false,
        handlers: {},
        send({ data, fail }) {
          if (s.failSends) fail({ errMsg: 'sendSocketMessage:fail WebSocket is not connected' });
          else s.sent.push(JSON.parse(data));
        },
        // WeChat reports a close the client asked for, a moment later (unless the test
        // plays a half-open socket that never reports one).
        silentClose: false,
        close(o) {
          s.closedWith = o;
          if (!s.silentClose) setTimeout(() => s.handlers.close && s.handlers.close({ code: o && o.code, reason: o && o.reason }), 0);
        },
        onOpen(h) { s.handlers.open = h; },
        onMessage(h) { s.handlers.message = h; },
        onClose(h) { s.handlers.close = h; },
        onError(h) { s.handlers.error = h; },
        serverSays(type, data) { s.handlers.message({ data: JSON.stringify({ type, data }) }); },
      };
      sockets.push(s);
      return s;
    },
  };
  return { wx, sockets };
}

function clientOn(wx, events) {
  return createClient({
    url: 'wss://example.invalid/v1/ws',
    wx,
    storage: { get() {}, set() {} },
    getToken: async () => 't',
    onNotification() {},
    onEvent: (e) => events.push(e),
  });
}

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

test('send() writes on the open socket only, and refuses the types the SDK sends itself', async () => {
  const { wx, sockets } = scriptedWx();
  const client = clientOn(wx, []);
  assert.strictEqual(client.send('location', { lat: 31.2, lng: 121.5 }), false, 'idle: nothing to send on');
  client.connect();
  await tick(5);
  assert.strictEqual(client.send('location', { lat: 31.2, lng: 121.5 }), false, 'not open before welcome');
  sockets[0].serverSays('welcome', { idle_timeout_s: 60 });
  assert.strictEqual(client.send('location', { lat: 31.2, lng: 121.5 }), true);
  assert.deepStrictEqual(sockets[0].sent, [{ type: 'location', data: { lat: 31.2, lng: 121.5 } }]);
  assert.throws(() => client.send('ack', { message_id: 'x' }), TypeError);
  client.close();
});

test('a refused send is a dropped socket: close 1006, then a reconnect', async () => {
  const { wx, sockets } = scriptedWx();
  const events = [];
  const client = clientOn(wx, events);
  client.connect();
  await tick(5);
  sockets[0].serverSays('welcome', { idle_timeout_s: 60 });
  sockets[0].failSends = true;
  assert.strictEqual(client.send('location', { lat: 1, lng: 2 }), false);
  await tick(5);
  assert.deepStrictEqual(events.filter((e) => e.type === 'close'), [{ type: 'close', code: 1006, reason: 'send failed' }]);
  assert.ok(events.some((e) => e.type === 'reconnecting'));
  assert.ok(sockets[0].closedWith, 'the dead socket is closed too');
  assert.strictEqual(client.state(), 'connecting');
  client.close();
});

test('a heartbeat ping with no answer by the next tick drops the socket; an answer keeps it', async () => {
  const { wx, sockets } = scriptedWx();
  const events = [];
  const client = clientOn(wx, events);
  client.connect();
  await tick(5);
  // idle 3 s: a ping every second (the SDK's floor).
  sockets[0].serverSays('welcome', { idle_timeout_s: 3 });
  await tick(1100);
  assert.deepStrictEqual(sockets[0].sent, [{ type: 'ping', data: {} }]);
  sockets[0].serverSays('pong', {});
  await tick(1000);
  assert.strictEqual(sockets[0].sent.length, 2, 'answered: another ping');
  assert.strictEqual(client.state(), 'open');
  await tick(1000);
  await tick(5);
  assert.deepStrictEqual(events.filter((e) => e.type === 'close'), [{ type: 'close', code: 1006, reason: 'no answer to ping' }]);
  assert.strictEqual(client.state(), 'connecting');
  client.close();
});

test('the app shown while open probes the socket with a ping', async () => {
  const { wx, sockets } = scriptedWx();
  let show;
  wx.onAppShow = (h) => { show = h; };
  wx.offAppShow = () => { show = undefined; };
  const events = [];
  const client = clientOn(wx, events);
  client.connect();
  await tick(5);
  sockets[0].serverSays('welcome', { idle_timeout_s: 60 });
  show();
  assert.deepStrictEqual(sockets[0].sent, [{ type: 'ping', data: {} }]);
  // It died in the background without telling: the probe finds out.
  sockets[0].failSends = true;
  show();
  await tick(5);
  assert.strictEqual(events.filter((e) => e.type === 'close')[0].code, 1006);
  client.close();
  assert.strictEqual(show, undefined, 'close() stops listening');
});

test('two clients sharing a storage keep each other\'s seen ids', () => {
  const map = new Map();
  const storage = { get: (k) => map.get(k), set: (k, v) => map.set(k, v) };
  const merchant = new SeenIds(storage);
  const rider = new SeenIds(storage);
  merchant.add('m-1', 1000);
  rider.add('r-1', 1000);
  merchant.add('m-2', 1000);
  const restarted = new SeenIds(storage);
  for (const id of ['m-1', 'r-1', 'm-2']) assert.ok(restarted.has(id, 2000), id);
});

test('a socket given up on is replaced only once it reports its close, or after 3 s if it never does', async () => {
  const { wx, sockets } = scriptedWx();
  const events = [];
  const client = clientOn(wx, events);
  client.connect();
  await tick(5);
  sockets[0].serverSays('welcome', { idle_timeout_s: 60 });
  sockets[0].failSends = true;
  sockets[0].silentClose = true;
  client.send('location', { lat: 1, lng: 2 });
  await tick(1000);
  assert.strictEqual(sockets.length, 1, 'no second socket while the first may still be open');
  assert.deepStrictEqual(events.filter((e) => e.type === 'close'), []);
  await tick(2100);
  assert.deepStrictEqual(events.filter((e) => e.type === 'close'), [{ type: 'close', code: 1006, reason: 'send failed' }]);
  client.close();
});
