// Shared by the k6 scripts: configuration from the environment, the tokens file, and a
// socket session that keeps alive, acks notifications and measures delivery latency.
import ws from 'k6/ws';
import { check } from 'k6';
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

// Holds one socket for `holdMs`, acking every notification that needs it.
export function session(token, holdMs) {
  const res = ws.connect(`${WS_URL}?token=${token}`, {}, (socket) => {
    let leaving = false;
    socket.on('message', (text) => {
      const msg = JSON.parse(text);
      if (msg.type === 'welcome') {
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
    });
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
}
