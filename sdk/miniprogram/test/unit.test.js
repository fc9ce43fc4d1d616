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
