// Merchant new-order flow: merchant admins stay connected while new-order notices are
// pushed to them (as WeChat Pay callbacks would cause) and acked; plus the read path
// a merchant's console polls.
//
//   BASE_URL=http://host:8080 TOKENS_FILE=tokens.json k6 run loadtest/k6/merchant_flow.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, MERCHANTS, PLATFORM, session, COMMON_THRESHOLDS, guarded, seeded } from './lib.js';

const merchants = Math.min(Number(__ENV.MERCHANTS || 20), MERCHANTS.length);
const seconds = Number(__ENV.SECONDS || 30);

export const options = {
  scenarios: {
    merchants: {
      executor: 'per-vu-iterations', vus: merchants, iterations: 1,
      maxDuration: `${seconds + 30}s`, exec: 'merchant',
    },
    new_orders: {
      executor: 'constant-arrival-rate', rate: Number(__ENV.RATE || 20), timeUnit: '1s',
      duration: `${Math.max(1, seconds - 5)}s`, startTime: '3s',
      preAllocatedVUs: 10, maxVUs: 50, exec: 'newOrder',
    },
    console: {
      executor: 'constant-vus', vus: 2, duration: `${seconds}s`, exec: 'readConsole',
    },
  },
  thresholds: {
    ...COMMON_THRESHOLDS,
    delivery_latency_ms: ['p(99)<250'],
    notifications_acked: ['count>0'],
    unexpected_closes: ['count==0'],
    welcomes: [`count>=${merchants}`],
    'http_req_duration{scenario:console}': ['p(95)<200'],
  },
};

export const merchant = guarded(function merchant() {
  session(seeded(MERCHANTS, merchants).token, seconds * 1000);
});

export const newOrder = guarded(function newOrder() {
  const m = MERCHANTS[Math.floor(Math.random() * merchants)];
  const res = http.post(`${BASE_URL}/v1/platform/notifications`, JSON.stringify({
    user_id: m.user_id, title: '新订单通知', content: '您有新的已支付订单，请及时处理',
    data: { sent_at: Date.now() * 1000, merchant_id: m.merchant_id },
  }), { headers: { 'content-type': 'application/json', authorization: `Bearer ${PLATFORM}` } });
  check(res, { 'new order pushed (202)': (r) => r.status === 202 });
});

export const readConsole = guarded(function readConsole() {
  const m = MERCHANTS[Math.floor(Math.random() * merchants)];
  const res = http.get(`${BASE_URL}/v1/me`, { headers: { authorization: `Bearer ${m.token}` } });
  check(res, { 'me (200)': (r) => r.status === 200 });
});
