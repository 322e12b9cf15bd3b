// A mixed admin and allocation run on one pool: allocations (mostly single
// numbers, every fifth a batch of 10), status reads, segment loads of fresh
// non-overlapping ranges, and the retirement of the active segment while
// allocations run. Segments are small (5000 numbers, holes between them), so the
// pool also moves from segment to segment by itself and batches cross segments.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=500 test/load/k6/mixed.js
//
// The checker then proves that no number received lies in a retired segment's
// gap (test/load/dupcheck).
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { allocate, BASE, blockStart, commonThresholds, createPool, DURATION, envInt, loadSegment, p99, params, poolName } from './lib.js';

const POOL = poolName('mixed');
const SEGMENT = 5000;
const STEP = 10000;
const FIRST = blockStart(100);
const INITIAL = 4; // segments loaded by setup()

function arrival(rate, timeUnit, execName, vus) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit,
    duration: DURATION,
    preAllocatedVUs: vus,
    maxVUs: vus * 4,
    exec: execName,
  };
}

const RATE = envInt('RATE', 500);

export const options = {
  scenarios: {
    allocate: arrival(RATE, '1s', 'allocateMixed', envInt('VUS', 30)),
    status: arrival(20, '1s', 'status', 5),
    // Numbers drawn per second: about RATE * 2.8; loads bring 2 * 5000.
    load: arrival(Math.max(2, Math.ceil((RATE * 2.8) / SEGMENT) * 2), '1s', 'load', 2),
    retire: arrival(1, '3s', 'retire', 1),
  },
  thresholds: Object.assign(commonThresholds(), {
    'http_req_duration{name:allocate}': [p99(100)],
    'http_req_duration{name:status}': ['p(99)<250'],
    'http_req_duration{name:load_segment}': ['p(99)<500'],
    'http_req_duration{name:retire}': ['p(99)<500'],
  }),
};

export function setup() {
  createPool(POOL, 0, 0);
  for (let i = 0; i < INITIAL; i++) loadSegment(POOL, FIRST + i * STEP, SEGMENT, 'setup', true);
}

export function allocateMixed() {
  const count = exec.scenario.iterationInTest % 5 === 4 ? 10 : 1;
  allocate(POOL, count);
}

export function status() {
  const i = exec.scenario.iterationInTest % 3;
  const path = i === 0 ? `/v1/pools/${POOL}` : i === 1 ? '/v1/pools' : `/v1/pools/${POOL}/segments`;
  const r = http.get(`${BASE}${path}`, params('status'));
  check(r, {
    'status: 200': (res) => res.status === 200,
    'status: issued is a decimal string': (res) => i !== 0 || /^[0-9]+$/.test(res.json('issued')),
  });
}

export function load() {
  loadSegment(POOL, FIRST + (INITIAL + exec.scenario.iterationInTest) * STEP, SEGMENT);
}

// retire retires the active segment, but only while two or more are queued
// behind it, so that allocations never run dry.
export function retire() {
  const r = http.get(`${BASE}/v1/pools/${POOL}/segments`, params('status'));
  if (!check(r, { 'status: 200': (res) => res.status === 200 })) return;
  const segments = r.json('segments');
  const active = segments.find((s) => s.state === 'active');
  const queued = segments.filter((s) => s.state === 'queued').length;
  if (!active || queued < 2) return;
  const rr = http.post(`${BASE}/v1/pools/${POOL}/segments/${active.id}/retire`, null, params('retire'));
  check(rr, {
    'retire: 200': (res) => res.status === 200,
    'retire: state retired': (res) => res.status === 200 && res.json('state') === 'retired',
  });
}
