// Runs the seed's reference code (reference.js) under a small stand-in for WeChat's
// `wx`: `wx.connectSocket` speaks real WebSocket (the `ws` package, which answers Pings
// as WeChat's stack does), and `api.example.com` is whichever of the replicas given
// answers, as behind a load balancer. Every toast and every socket event is one JSON
// line on stdout; the reference code's own logging goes to stderr.
//
//   node run.js 127.0.0.1:8080,127.0.0.1:8081 <token>
'use strict';
const WebSocket = require('ws');

const backends = process.argv[2].split(',');
const token = process.argv[3];
const emit = (event) => process.stdout.write(JSON.stringify({ ...event, at: Date.now() }) + '\n');
console.log = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');

let turn = 0;

class SocketTask {
  constructor(url) {
    this.handlers = { open: [], message: [], close: [], error: [] };
    this.url = url;
    setImmediate(() => this.dial(0));
  }

  // Tries the replicas in turn, as a load balancer would: a refused connect or a
  // refused handshake (a draining replica answers 503) moves on to the next one.
  dial(tried) {
    const backend = backends[turn % backends.length];
    const ws = new WebSocket(this.url.replace('api.example.com', backend));
    let opened = false;
    const fail = (err) => {
      if (opened) return;
      turn += 1;
      if (tried + 1 < backends.length) return this.dial(tried + 1);
      this.handlers.error.forEach((h) => h({ errMsg: String(err) }));
      this.handlers.close.forEach((h) => h({ code: 1006, reason: '' }));
    };
    ws.on('unexpected-response', (_req, res) => { ws.terminate(); fail(`HTTP ${res.statusCode}`); });
    ws.on('error', (err) => fail(err.message));
    ws.on('open', () => {
      opened = true;
      emit({ event: 'open', backend });
      this.handlers.open.forEach((h) => h({}));
    });
    ws.on('message', (data) => this.handlers.message.forEach((h) => h({ data: data.toString() })));
    ws.on('close', (code, reason) => {
      if (!opened) return;
      emit({ event: 'close', backend, code });
      this.handlers.close.forEach((h) => h({ code, reason: reason.toString() }));
    });
  }

  onOpen(h) { this.handlers.open.push(h); }
  onMessage(h) { this.handlers.message.push(h); }
  onClose(h) { this.handlers.close.push(h); }
  onError(h) { this.handlers.error.push(h); }
}

global.wx = {
  connectSocket({ url, success }) {
    const task = new SocketTask(url);
    if (success) success();
    return task;
  },
  showToast({ title }) {
    emit({ event: 'toast', title });
  },
};

require('./reference.js').connectWebSocket(token);
