// Proves the shared thresholds catch a script that throws: one virtual user reads a
// field of a user that is not there, the mistake that once crashed the soak run while
// it still passed. `scripts/k6-smoke.sh` runs this first and fails unless k6 fails.
//
//   TOKENS_FILE=tokens.json k6 run loadtest/k6/selftest_throw.js   (must exit non-zero)
import { COMMON_THRESHOLDS, RIDERS, guarded } from './lib.js';

export const options = {
  scenarios: { once: { executor: 'per-vu-iterations', vus: 1, iterations: 1 } },
  thresholds: COMMON_THRESHOLDS,
};

export default guarded(function () {
  const missing = RIDERS[RIDERS.length];
  return missing.token; // TypeError: undefined has no 'token'
});
