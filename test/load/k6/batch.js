// Batches: count 100 and count 1000 at once, each on its own pool.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE_100=200 -e RATE_1000=50 test/load/k6/batch.js
//
// A batch is all or nothing and ascending; it may span two segments, so the
// pools are given segments of 250 000 numbers and a batch now and then crosses
// from one into the next (the record then holds two runs).
import { allocate, blockStart, commonThresholds, createPool, DURATION, envInt, loadSegment, poolName, seconds } from './lib.js';

const POOL_100 = poolName('batch100');
const POOL_1000 = poolName('batch1000');
const SEGMENT = 250000;
const RATE_100 = envInt('RATE_100', 200);
const RATE_1000 = envInt('RATE_1000', 50);

// segmentsFor is how many segments a pool needs for the run, with room to spare.
function segmentsFor(rate, count) {
  return Math.ceil((rate * count * seconds(DURATION) * 1.5) / SEGMENT) + 2;
}

function arrival(rate, exec) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: envInt('VUS', 20),
    maxVUs: envInt('MAX_VUS', 200),
    exec,
  };
}

export const options = {
  scenarios: {
    batch100: arrival(RATE_100, 'batch100'),
    batch1000: arrival(RATE_1000, 'batch1000'),
  },
  thresholds: Object.assign(commonThresholds(), {
    'http_req_duration{scenario:batch100}': [`p(99)<${envInt('P99_MS_100', 100)}`],
    'http_req_duration{scenario:batch1000}': [`p(99)<${envInt('P99_MS_1000', 250)}`],
  }),
};

export function setup() {
  for (const [pool, k, rate, count] of [[POOL_100, 1, RATE_100, 100], [POOL_1000, 2, RATE_1000, 1000]]) {
    createPool(pool, 0, 0);
    // Segments with holes between them: a batch that crosses one is not
    // one run of consecutive numbers.
    const total = segmentsFor(rate, count);
    for (let i = 0; i < total; i++) {
      loadSegment(pool, blockStart(k) + i * 2 * SEGMENT, SEGMENT, 'setup', true);
    }
  }
}

export function batch100() {
  allocate(POOL_100, 100, 'allocate100');
}

export function batch1000() {
  allocate(POOL_1000, 1000, 'allocate1000');
}
