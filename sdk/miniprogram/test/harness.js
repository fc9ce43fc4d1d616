// Runs the built SDK (dist/) in Node under the wx stand-in, for tests that drive real
// replicas (tests/api/sdk.rs). Every client event, handled notification and token
// request is one JSON line on stdout; commands come as JSON lines on stdin:
//
//   {"cmd":"token","token":"..."}   the answer to the oldest token request
//   {"cmd":"connect"} / {"cmd":"close"}
//   {"cmd":"restart"}                the app restarts: a new client, the same storage
//   {"cmd":"show"} / {"cmd":"hide"}  app shown / backgrounded (socket cut, 1000 "interrupted")
//   {"cmd":"online","value":false}   network status (offline drops the socket)
//   {"cmd":"drop"}                   the network drops the socket (1006)
//   {"cmd":"fail_next","n":2}        the handler throws for the next n notifications
//   {"cmd":"random","value":0.99}    Math.random, for reproducible backoff
//   {"cmd":"lose_acks","value":true} acks sent from now on never arrive
//   {"cmd":"state"}                 reports the client's state and the sockets it opened
//   {"cmd":"subscribe","answers":{"TPL":"reject"},"events":["order.paid"]}
//                                    requestSubscriptions (a tap on "notify me"): reports
//                                    {"kind":"subscribed","results":[...],"prompts":[...]}
//
//   node harness.js 127.0.0.1:8080,127.0.0.1:8081
'use strict';
const readline = require('readline');
const { createClient, requestSubscriptions } = require('../dist');
const { createWx } = require('./wx-standin');

const backends = process.argv[2].split(',');
const emit = (line) => process.stdout.write(JSON.stringify({ ...line, at: Date.now() }) + '\n');

const { wx, phone, storage } = createWx({ backends, log: (l) => emit({ kind: 'wx', ...l }) });
const tokenWaiters = [];
let failNext = 0;

function start() {
  const client = createClient({
    url: 'ws://api.example.com/v1/ws',
    wx,
    storage: { get: (k) => wx.getStorageSync(k), set: (k, v) => wx.setStorageSync(k, v) },
    getToken: () =>
      new Promise((resolve) => {
        tokenWaiters.push(resolve);
        emit({ kind: 'need_token' });
      }),
    onNotification: async (n) => {
      if (failNext > 0) {
        failNext -= 1;
        emit({ kind: 'threw', message_id: n.message_id, title: n.title });
        throw new Error('the handler failed');
      }
      // A sound, a toast: something that takes a moment.
      await new Promise((r) => setTimeout(r, 2));
      emit({ kind: 'handled', message_id: n.message_id, title: n.title, event: n.event });
    },
    onEvent: (e) => emit({ kind: 'event', ...e, error: e.error ? String(e.error.errMsg || e.error.message || JSON.stringify(e.error)) : undefined }),
  });
  client.connect();
  return client;
}

let client = start();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line);
  switch (c.cmd) {
    case 'token': {
      const w = tokenWaiters.shift();
      if (w) w(c.token);
      break;
    }
    case 'connect': client.connect(); break;
    case 'close': client.close(); break;
    case 'restart':
      client.close();
      client = start();
      break;
    case 'show': phone.showApp(); break;
    case 'hide': phone.hideApp(); break;
    case 'online': phone.setOnline(c.value); break;
    case 'drop': phone.dropSockets(); break;
    case 'fail_next': failNext = c.n; break;
    case 'random': Math.random = () => c.value; break;
    case 'lose_acks': phone.loseAcks(c.value); break;
    case 'state':
      emit({ kind: 'state', state: client.state(), sockets: phone.openSockets(), opened: phone.socketsOpened(), max_open: phone.maxOpenSockets(), stored: storage.size });
      break;
    case 'subscribe':
      phone.setSubscribeAnswers(c.answers || {});
      requestSubscriptions({
        apiBase: 'http://api.example.com',
        wx,
        events: c.events,
        getToken: () =>
          new Promise((resolve) => {
            tokenWaiters.push(resolve);
            emit({ kind: 'need_token' });
          }),
      })
        .then((results) => emit({ kind: 'subscribed', results, prompts: phone.subscribePrompts() }))
        .catch((e) => emit({ kind: 'subscribe_failed', error: String(e.message || e) }));
      break;
    default:
      emit({ kind: 'bad_command', line });
  }
});
process.stdin.on('end', () => process.exit(0));
