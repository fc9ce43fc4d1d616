// Reconnect storm: every rider connects at once, holds briefly, drops, and connects
// again at once — what a replica restart looks like from the load balancer.
//
//   BASE_URL=http://host:8080 TOKENS_FILE=tokens.json k6 run loadtest/k6/reconnect_storm.js
import exec from 'k6/execution';
import { RIDERS, session } from './lib.js';

const riders = Math.min(Number(__ENV.RIDERS || 200), RIDERS.length);

export const options = {
  scenarios: {
    storm: {
      executor: 'per-vu-iterations', vus: riders, iterations: Number(__ENV.WAVES || 3),
      maxDuration: '2m',
    },
  },
  thresholds: {
    ws_connecting: ['p(95)<1000'],
    welcomes: [`count>=${riders}`],
    checks: ['rate>0.99'],
  },
};

export default function () {
  session(RIDERS[exec.vu.idInTest - 1].token, 2000);
}
