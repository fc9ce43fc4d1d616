// The example mini-program (example/) in Node, without a server: every page loads and
// wires the SDK with config.js (URL, tokens, position), the merchant page handles an
// order.paid, the rider page goes online before it connects and sends its position over
// the socket, and app.js's refreshToken answers pasted tokens or logs in. Against a real
// `locallife demo`: examples.e2e.test.js.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { EXAMPLE, loadExample, withScreen, eventually } = require('./miniprogram-host');

const CONFIG = {
  API_BASE: 'http://api.test',
  WS_URL: 'ws://api.test/v1/ws',
  TOKENS: { merchant: 'M-TOKEN', rider: 'R-TOKEN' },
  RIDER_POSITION: { lat: 31.232, lng: 121.4737 },
  LOCATION_EVERY_S: 3600,
};

// A wx whose sockets and requests the test answers: `sockets[i].serverSays(type, data)`,
// `requests` (answered by `answer(request)`, 200 {} unless it says otherwise).
function scriptedWx(answer = () => ({ statusCode: 200, data: {} })) {
  const sockets = [];
  const requests = [];
  const wx = {
    connectSocket({ url }) {
      const s = {
        url,
        sent: [],
        handlers: {},
        send({ data }) { s.sent.push(JSON.parse(data)); },
        close() {},
        onOpen() {},
        onMessage(h) { s.handlers.message = h; },
        onClose(h) { s.handlers.close = h; },
        onError() {},
        serverSays(type, data) { s.handlers.message({ data: JSON.stringify({ type, data }) }); },
      };
      sockets.push(s);
      return s;
    },
    request(r) {
      requests.push(r);
      setImmediate(() => r.success(answer(r)));
    },
    login: ({ success }) => setImmediate(() => success({ code: `code-${requests.length}` })),
    getStorageSync: () => '',
    setStorageSync: () => {},
  };
  const screen = withScreen(wx);
  return { wx, sockets, requests, screen };
}

test('every page of app.json loads, with its files, and libs/realtime.js is the current build', () => {
  const appJson = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'app.json'), 'utf8'));
  assert.deepStrictEqual(appJson.pages, ['pages/merchant/index', 'pages/rider/index']);
  const { wx } = scriptedWx();
  const example = loadExample({ wx, config: CONFIG });
  try {
    assert.strictEqual(typeof example.app.refreshToken, 'function');
    for (const route of appJson.pages) {
      for (const ext of ['js', 'json', 'wxml', 'wxss']) {
        assert.ok(fs.existsSync(path.join(EXAMPLE, `${route}.${ext}`)), `${route}.${ext}`);
      }
      const page = example.page(route);
      assert.strictEqual(typeof page.onLoad, 'function', route);
    }
  } finally {
    example.unload();
  }
  assert.ok(
    fs.readFileSync(path.join(EXAMPLE, 'libs/realtime.js')).equals(fs.readFileSync(path.join(__dirname, '../dist/index.js'))),
    'npm run build copies dist/index.js to example/libs/realtime.js',
  );
  // The sound the merchant page plays is there, and is an MP3 (an ID3 tag or a frame sync).
  const mp3 = fs.readFileSync(path.join(EXAMPLE, 'assets/new-order.mp3'));
  assert.ok(mp3.slice(0, 3).toString() === 'ID3' || (mp3[0] === 0xff && (mp3[1] & 0xe0) === 0xe0), 'an MP3');
});

test('the committed config.js has the settings the pages read', () => {
  const config = require(path.join(EXAMPLE, 'config.js'));
  assert.match(config.API_BASE, /^https?:\/\/[^/]+$/);
  assert.strictEqual(config.WS_URL, `${config.API_BASE.replace(/^http/, 'ws')}/v1/ws`);
  assert.deepStrictEqual(Object.keys(config.TOKENS).sort(), ['merchant', 'rider']);
  for (const token of Object.values(config.TOKENS)) assert.strictEqual(typeof token, 'string');
  assert.ok(config.RIDER_POSITION === null || typeof config.RIDER_POSITION.lat === 'number');
  assert.ok(config.LOCATION_EVERY_S > 0);
});

test('the merchant page connects to WS_URL with the merchant token, and handles order.paid', async () => {
  const { wx, sockets, screen } = scriptedWx();
  const example = loadExample({ wx, config: CONFIG });
  const page = example.page('pages/merchant/index');
  try {
    page.onLoad();
    const socket = await eventually('a socket', () => sockets[0]);
    assert.strictEqual(socket.url, 'ws://api.test/v1/ws?token=M-TOKEN&protocol=2');
    socket.serverSays('welcome', { idle_timeout_s: 60, protocol: 2 });
    assert.strictEqual(page.data.status, 'open');
    socket.serverSays('notification', {
      message_id: 'm-1', event: 'order.paid', title: '新订单', content: '', requires_ack: true,
      order_id: 42, out_trade_no: 'T42', merchant_id: 1, total_fen: 3600,
    });
    await eventually('the ack', () => socket.sent.find((m) => m.type === 'ack'));
    assert.deepStrictEqual(page.data.orders, [{ message_id: 'm-1', order_id: 42, yuan: '36.00' }]);
    assert.deepStrictEqual(screen.ui.find((u) => u.call === 'play'), { call: 'play', src: '/assets/new-order.mp3' });
    // A 4003 stops it, and says why.
    socket.handlers.close({ code: 4003, reason: '{"code":"not_merchant_admin","message":"x"}' });
    assert.strictEqual(page.data.status, 'not admitted: not_merchant_admin');
  } finally {
    page.onUnload();
    example.unload();
  }
});

test('the rider page goes online first, then connects with the rider token and sends its position', async () => {
  const { wx, sockets, requests } = scriptedWx();
  const example = loadExample({ wx, config: CONFIG });
  const page = example.page('pages/rider/index');
  try {
    await page.onLoad();
    assert.strictEqual(requests.length, 1);
    assert.strictEqual(requests[0].url, 'http://api.test/v1/rider/online');
    assert.strictEqual(requests[0].method, 'POST');
    assert.strictEqual(requests[0].header.Authorization, 'Bearer R-TOKEN');
    assert.deepStrictEqual(requests[0].data, CONFIG.RIDER_POSITION);
    const socket = await eventually('a socket', () => sockets[0]);
    assert.strictEqual(socket.url, 'ws://api.test/v1/ws?token=R-TOKEN&protocol=2');
    socket.serverSays('welcome', { idle_timeout_s: 60, protocol: 2 });
    await eventually('a location', () => socket.sent.find((m) => m.type === 'location'));
    assert.deepStrictEqual(socket.sent.find((m) => m.type === 'location').data, CONFIG.RIDER_POSITION);
    socket.serverSays('notification', {
      message_id: 'r-1', event: 'order.recommend', title: '新订单推荐', content: '', requires_ack: true,
      order_id: 7, merchant_id: 1, merchant_name: 'Demo', total_fen: 1800, distance_m: 180,
    });
    await eventually('the offer', () => page.data.offers.length === 1);
    assert.deepStrictEqual(page.data.offers[0], { order_id: 7, merchant_name: 'Demo', distance_m: 180, yuan: '18.00' });
    socket.serverSays('notification', { message_id: 'r-2', event: 'order.taken', title: '', content: '', requires_ack: false, order_id: 7 });
    await eventually('the offer withdrawn', () => page.data.offers.length === 0);
  } finally {
    page.onUnload();
    example.unload();
  }
});

test('the rider page refuses to connect when going online fails, and says why', async () => {
  const { wx, sockets } = scriptedWx(() => ({ statusCode: 403, data: { code: 'rider_not_approved', message: 'x' } }));
  const example = loadExample({ wx, config: CONFIG });
  const page = example.page('pages/rider/index');
  try {
    await page.onLoad();
    assert.strictEqual(sockets.length, 0);
    assert.strictEqual(page.data.note, 'online failed: 403 rider_not_approved');
  } finally {
    page.onUnload();
    example.unload();
  }
});

test('refreshToken: a pasted token as is; else a WeChat login, kept until two minutes before expiry', async () => {
  const logins = [];
  const { wx } = scriptedWx((r) => {
    logins.push(r.data.code);
    return { statusCode: 200, data: { access_token: `T${logins.length}`, token_type: 'Bearer', expires_in: 7200 } };
  });
  const example = loadExample({ wx, config: { ...CONFIG, TOKENS: { merchant: 'M-TOKEN', rider: '' } } });
  try {
    assert.strictEqual(await example.app.refreshToken('merchant'), 'M-TOKEN');
    assert.strictEqual(await example.app.refreshToken('rider'), 'T1');
    assert.strictEqual(await example.app.refreshToken('rider'), 'T1', 'kept');
    example.app.globalData.login.expiresAt = Date.now() + 60_000;
    assert.strictEqual(await example.app.refreshToken('rider'), 'T2', 'renewed near expiry');
    assert.strictEqual(logins.length, 2);
  } finally {
    example.unload();
  }
});
