// Single-number allocation at a constant arrival rate on one pool.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=2000 -e DURATION=20s test/load/k6/single.js
//
// See lib.js for the environment and the record of numbers received.
import { allocate, blockStart, commonThresholds, createPool, DURATION, envInt, p99, poolName } from './lib.js';

const POOL = poolName('single');

export const options = {
  scenarios: {
    single: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 2000),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 400),
      exec: 'single',
    },
  },
  thresholds: Object.assign(commonThresholds(), {
    'http_req_duration{name:allocate}': [p99(50)],
  }),
};

export function setup() {
  createPool(POOL, blockStart(0), 1e12);
}

export function single() {
  allocate(POOL, 1);
}
