// Shared by the k6 scripts: configuration from the environment, the tokens file, and a
// socket session that keeps alive, acks notifications and measures delivery latency.
import ws from 'k6/ws';
import { check } from 'k6';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

// BASE_URL: http(s)://host[:port] of a deployment; TOKENS_FILE: the JSON written by
// `loadgen seed` ({platform, riders: [{user_id, token}], merchants: [...]}).
export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const WS_URL = BASE_URL.replace(/^http/, 'ws') + '/v1/ws';
const file = JSON.parse(open(__ENV.TOKENS_FILE || './tokens.json'));
export const PLATFORM = file.platform;
export const RIDERS = new SharedArray('riders', () => file.riders || []);
export const MERCHANTS = new SharedArray('merchants', () => file.merchants || []);

export const deliveryLatency = new Trend('delivery_latency_ms', true);
export const received = new Counter('notifications_received');
export const acked = new Counter('notifications_acked');
export const welcomes = new Counter('welcomes');
export const unexpectedCloses = new Counter('unexpected_closes');
// Exceptions thrown by the scripts' own code: k6 logs them and goes on, so without a
// threshold on this counter a broken script still passes.
export const scriptErrors = new Counter('script_errors');

// The thresholds every script shares: nothing threw, and checks held.
export const COMMON_THRESHOLDS = {
  script_errors: ['count==0'],
  checks: ['rate>0.99'],
};

// `fn`, counting whatever it throws in `script_errors` before k6 sees it.
export function guarded(fn) {
  return function (...args) {
    try {
      return fn(...args);
    } catch (e) {
      scriptErrors.add(1);
      throw e;
    }
  };
}

// This iteration's member of `list` (pre-seeded users), numbered within the scenario:
// virtual-user ids are numbered across all scenarios of a test, so they cannot index
// one scenario's users. Wraps around when the scenario runs more iterations than there
// are users; throws (counted) when the list is empty.
export function seeded(list, count) {
  const n = Math.min(count, list.length);
  if (n === 0) throw new Error('no pre-seeded users for this scenario (TOKENS_FILE)');
  return list[exec.scenario.iterationInTest % n];
}

// Holds one socket for `holdMs`, acking every notification that needs it (protocol 2:
// explicit acks). Checks that the server said welcome.
export function session(token, holdMs) {
  let welcomed = false;
  const res = ws.connect(`${WS_URL}?token=${token}&protocol=2`, {}, (socket) => {
    let leaving = false;
    socket.on('message', guarded((text) => {
      const msg = JSON.parse(text);
      if (msg.type === 'welcome') {
        welcomed = true;
        welcomes.add(1);
        return;
      }
      if (msg.type !== 'notification') return;
      received.add(1);
      const sent = msg.data.sent_at; // microseconds, set by the publisher
      if (sent) deliveryLatency.add(Date.now() - sent / 1000);
      if (msg.data.requires_ack) {
        socket.send(JSON.stringify({ type: 'ack', data: { message_id: msg.data.message_id } }));
        acked.add(1);
      }
    }));
    // Application-level pings, as mini-programs send them.
    socket.setInterval(() => socket.send(JSON.stringify({ type: 'ping', data: {} })), 20000);
    // A close we did not ask for (idle timeout, drain, slow consumer...) is a failure.
    socket.on('close', () => {
      if (!leaving) unexpectedCloses.add(1);
    });
    socket.setTimeout(() => {
      leaving = true;
      socket.close();
    }, holdMs);
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  check(welcomed, { 'welcomed': (w) => w });
}
