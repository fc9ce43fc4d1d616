// Reconnect storm: every rider connects at once, holds briefly, drops, and connects
// again at once — what a replica restart looks like from the load balancer.
//
//   BASE_URL=http://host:8080 TOKENS_FILE=tokens.json k6 run loadtest/k6/reconnect_storm.js
import { RIDERS, session, COMMON_THRESHOLDS, guarded, seeded } from './lib.js';

const riders = Math.min(Number(__ENV.RIDERS || 200), RIDERS.length);

export const options = {
  scenarios: {
    storm: {
      executor: 'per-vu-iterations', vus: riders, iterations: Number(__ENV.WAVES || 3),
      maxDuration: '2m',
    },
  },
  thresholds: {
    ...COMMON_THRESHOLDS,
    ws_connecting: ['p(95)<1000'],
    welcomes: [`count>=${riders}`],
  },
};

export default guarded(function () {
  session(seeded(RIDERS, riders).token, 2000);
});
