// Many pools at once: POOLS pools (default 50), each request to the next pool in
// turn, at a constant arrival rate.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e POOLS=50 -e RATE=2000 test/load/k6/pools.js
import exec from 'k6/execution';
import { allocate, blockStart, commonThresholds, createPool, DURATION, envInt, p99, poolName } from './lib.js';

const POOLS = envInt('POOLS', 50);
const names = [];
for (let i = 0; i < POOLS; i++) names.push(poolName(`pools-${String(i).padStart(3, '0')}`));

export const options = {
  scenarios: {
    pools: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 2000),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 400),
      exec: 'pools',
    },
  },
  thresholds: Object.assign(commonThresholds(), {
    'http_req_duration{name:allocate}': [p99(50)],
  }),
};

export function setup() {
  names.forEach((pool, i) => createPool(pool, blockStart(10 + i), 1e12));
}

export function pools() {
  allocate(names[exec.scenario.iterationInTest % POOLS], 1);
}
