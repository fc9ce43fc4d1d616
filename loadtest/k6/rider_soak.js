// Rider soak: riders stay connected and ack everything, while the platform publishes
// personal notifications to them; delivery latency comes from a send timestamp in the
// notification's data.
//
//   BASE_URL=http://host:8080 TOKENS_FILE=tokens.json k6 run loadtest/k6/rider_soak.js
//   (RIDERS, DURATION, RATE override the defaults below)
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, PLATFORM, RIDERS, session, COMMON_THRESHOLDS, guarded, seeded } from './lib.js';

const riders = Math.min(Number(__ENV.RIDERS || 50), RIDERS.length);
const duration = __ENV.DURATION || '30s';
const seconds = parseInt(duration, 10) * (duration.endsWith('m') ? 60 : 1);

export const options = {
  scenarios: {
    riders: {
      executor: 'per-vu-iterations', vus: riders, iterations: 1,
      maxDuration: `${seconds + 30}s`, exec: 'rider',
    },
    platform: {
      executor: 'constant-arrival-rate', rate: Number(__ENV.RATE || 50), timeUnit: '1s',
      duration: `${Math.max(1, seconds - 5)}s`, startTime: '3s',
      preAllocatedVUs: 20, maxVUs: 100, exec: 'publish',
    },
  },
  // What "good" means for a deployment.
  thresholds: {
    ...COMMON_THRESHOLDS,
    delivery_latency_ms: ['p(50)<50', 'p(99)<250'],
    notifications_received: ['count>0'],
    unexpected_closes: ['count==0'],
    welcomes: [`count>=${riders}`],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{scenario:platform}': ['p(99)<500'],
  },
};

export const rider = guarded(function rider() {
  session(seeded(RIDERS, riders).token, seconds * 1000);
});

export const publish = guarded(function publish() {
  const rider = RIDERS[Math.floor(Math.random() * riders)];
  const res = http.post(`${BASE_URL}/v1/platform/notifications`, JSON.stringify({
    user_id: rider.user_id, title: '调度', content: 'soak',
    data: { sent_at: Date.now() * 1000 },
  }), { headers: { 'content-type': 'application/json', authorization: `Bearer ${PLATFORM}` } });
  check(res, { 'published (202)': (r) => r.status === 202 });
});
