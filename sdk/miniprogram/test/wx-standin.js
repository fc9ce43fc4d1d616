// A stand-in for the parts of WeChat's `wx` the SDK uses, on the `ws` package:
// connectSocket and its SocketTask (real WebSocket; `ws` answers Ping frames, as
// WeChat's stack may or may not), app show/hide, network status, and storage (a Map).
// `backends` are tried in turn for each connect, as a load balancer would; a refused
// handshake or connection is reported as WeChat reports it: a failed connect, then a
// close with 1006.
'use strict';
const WebSocket = require('ws');

function createWx({ backends, storage = new Map(), log = () => {} }) {
  let turn = 0;
  let online = true;
  const appShow = new Set();
  const network = new Set();
  const sockets = new Set();
  let opened = 0;
  let maxOpen = 0;
  let dropAcks = false;
  // What the user answers WeChat's subscription prompt, per template ('accept' unless set).
  let subscribeAnswers = {};
  const subscribePrompts = [];

  class SocketTask {
    constructor(url) {
      this.handlers = { open: [], message: [], close: [], error: [] };
      this.closed = false;
      sockets.add(this);
      opened += 1;
      maxOpen = Math.max(maxOpen, sockets.size);
      const backend = backends[turn % backends.length];
      turn += 1;
      this.backend = backend;
      if (!online) {
        setImmediate(() => this.fail('network offline'));
        return;
      }
      this.ws = new WebSocket(url.replace('api.example.com', backend));
      this.ws.on('unexpected-response', (_req, res) => {
        this.ws.terminate();
        this.fail(`HTTP ${res.statusCode}`);
      });
      this.ws.on('error', (err) => this.fail(err.message));
      this.ws.on('open', () => {
        log({ wx: 'open', backend });
        this.handlers.open.forEach((h) => h({}));
      });
      this.ws.on('message', (data) => {
        if (!this.closed) this.handlers.message.forEach((h) => h({ data: data.toString() }));
      });
      this.ws.on('close', (code, reason) => this.finish(code, reason.toString()));
    }

    fail(errMsg) {
      if (this.closed) return;
      this.handlers.error.forEach((h) => h({ errMsg }));
      this.finish(1006, '');
    }

    finish(code, reason) {
      if (this.closed) return;
      this.closed = true;
      sockets.delete(this);
      log({ wx: 'close', backend: this.backend, code });
      this.handlers.close.forEach((h) => h({ code, reason }));
    }

    send({ data, success, fail }) {
      if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) {
        if (fail) fail({ errMsg: 'sendSocketMessage:fail' });
        return;
      }
      // A lost ack: sent, never arrives (the phone's network ate it).
      if (!(dropAcks && JSON.parse(data).type === 'ack')) this.ws.send(data);
      if (success) success();
    }

    close({ code = 1000, reason = '' } = {}) {
      if (!this.ws || this.closed) return;
      try {
        this.ws.close(code, reason);
      } catch (_) {
        this.ws.terminate();
      }
    }

    /** The network drops under it: no close handshake, 1006. */
    drop() {
      if (this.ws) this.ws.terminate();
    }

    onOpen(h) { this.handlers.open.push(h); }
    onMessage(h) { this.handlers.message.push(h); }
    onClose(h) { this.handlers.close.push(h); }
    onError(h) { this.handlers.error.push(h); }
  }

  const wx = {
    connectSocket({ url }) {
      return new SocketTask(url);
    },
    onAppShow(h) { appShow.add(h); },
    offAppShow(h) { appShow.delete(h); },
    onNetworkStatusChange(h) { network.add(h); },
    offNetworkStatusChange(h) { network.delete(h); },
    getStorageSync(k) { return storage.has(k) ? JSON.parse(storage.get(k)) : ''; },
    setStorageSync(k, v) { storage.set(k, JSON.stringify(v)); },
    // wx.request over Node's fetch, to the first backend, answering as WeChat does:
    // success with statusCode and parsed JSON data for any HTTP answer. Like WeChat's,
    // the body is JSON unless the caller's header says otherwise.
    request({ url, method = 'GET', header = {}, data, success, fail }) {
      const target = url.replace('api.example.com', backends[0]);
      const typed = Object.keys(header).some((k) => k.toLowerCase() === 'content-type');
      const init = { method, headers: typed ? header : { ...header, 'content-type': 'application/json' } };
      if (data !== undefined && method !== 'GET') init.body = JSON.stringify(data);
      fetch(target, init)
        .then(async (res) => {
          const text = await res.text();
          let parsed = text;
          try { parsed = JSON.parse(text); } catch (_) { /* kept as text, like WeChat */ }
          if (success) success({ statusCode: res.status, data: parsed, header: {} });
        })
        .catch((e) => fail && fail({ errMsg: `request:fail ${e.message}` }));
    },
    // The subscription prompt: answered at once from `subscribeAnswers`.
    requestSubscribeMessage({ tmplIds, success, fail }) {
      if (!Array.isArray(tmplIds) || tmplIds.length === 0 || tmplIds.length > 3) {
        if (fail) setImmediate(() => fail({ errMsg: 'requestSubscribeMessage:fail invalid tmplIds', errCode: 20001 }));
        return;
      }
      subscribePrompts.push(tmplIds.slice());
      const result = { errMsg: 'requestSubscribeMessage:ok' };
      for (const id of tmplIds) result[id] = subscribeAnswers[id] || 'accept';
      if (success) setImmediate(() => success(result));
    },
  };

  // What the tests do to the "phone".
  const phone = {
    setSubscribeAnswers(answers) { subscribeAnswers = answers; },
    subscribePrompts() { return subscribePrompts; },
    showApp() { appShow.forEach((h) => h({})); },
    /** Backgrounded: WeChat cuts the socket with 1000 "interrupted". */
    hideApp() {
      for (const s of sockets) if (s.ws) s.ws.close(1000, 'interrupted');
    },
    setOnline(value) {
      online = value;
      if (!value) for (const s of sockets) s.drop();
      network.forEach((h) => h({ isConnected: value, networkType: value ? 'wifi' : 'none' }));
    },
    dropSockets() { for (const s of sockets) s.drop(); },
    openSockets() { return sockets.size; },
    socketsOpened() { return opened; },
    maxOpenSockets() { return maxOpen; },
    loseAcks(value) { dropAcks = value; },
  };
  return { wx, phone, storage };
}

module.exports = { createWx };
