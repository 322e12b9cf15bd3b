// Shared helpers of numberd's k6 scenarios: configuration from the environment,
// pool set-up, allocation with checks, and the record of every number received.
//
// Environment (all optional):
//   BASE_URL   numberd's base URL                          http://127.0.0.1:8080
//   TOKEN      an admin bearer token (none: numberd runs open)
//   RUN        prefix of the pool names, so that runs against one server do not collide
//   DURATION   how long each scenario runs                 20s
//   RATE       arrival rate of allocations per second       (per scenario)
//   P99_MS     the allocation p99 threshold in ms           (per scenario)
//
// The record: every allocation answer is written with console.log as one line
// of test/load/internal/record's format,
//
//   N<TAB><pool><TAB><first>:<count>[ <first>:<count>…]
//
// a run per stretch of consecutive numbers (one for an answer of 1 number, one
// or two for a batch). Run k6 with --log-output=file=<path> --log-format=raw and
// hand the file to test/load/dupcheck. k6 keeps nothing in memory for it; the
// file hook writes the lines as they come.
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';

export const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const RUN = __ENV.RUN || 'load';
export const DURATION = __ENV.DURATION || '20s';
const TOKEN = __ENV.TOKEN || '';

// Width of every number in the load tests' pools.
export const DIGITS = 20;
// The digits above the last 18, shared by every number of the load tests.
const HEAD = '24';
// Each pool gets its own block of 10^13 numbers, k * 10^13 + 1 …, so that the
// checker can prove uniqueness across pools too; k * 10^13 stays below 2^53.
const BLOCK = 1e13;

export const numbersReceived = new Counter('numbers_received');

export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envInt(name, fallback) {
  const n = parseInt(env(name, ''), 10);
  return Number.isFinite(n) ? n : fallback;
}

export function params(name, extra) {
  const headers = { 'Content-Type': 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  return Object.assign({ headers, tags: { name } }, extra || {});
}

export function poolName(name) {
  return `${RUN}-${name}`;
}

// number formats the tail (below 2^53) as a full-width number of the load tests.
export function number(tail) {
  return HEAD + String(tail).padStart(DIGITS - HEAD.length, '0');
}

// blockStart is the first tail of pool block k.
export function blockStart(k) {
  return k * BLOCK + 1;
}

// createPool makes the pool and loads a segment of size numbers starting at tail
// first. It is for setup(): it fails the test on any error.
export function createPool(pool, first, size) {
  let r = http.put(`${BASE}/v1/pools/${pool}`, JSON.stringify({ digits: DIGITS }), params('setup'));
  if (r.status !== 201 && r.status !== 200) fail(`PUT pool ${pool}: ${r.status} ${r.body}`);
  if (size > 0) loadSegment(pool, first, size, 'setup', true);
}

// loadSegment loads first..first+size-1 into pool; 201 (new) or 200 (the same
// segment again) pass.
export function loadSegment(pool, first, size, name, mustSucceed) {
  const body = JSON.stringify({ start: number(first), end: number(first + size - 1) });
  const r = http.post(`${BASE}/v1/pools/${pool}/segments`, body, params(name || 'load_segment'));
  const ok = check(r, { 'segment loaded': (res) => res.status === 201 || res.status === 200 });
  if (!ok && mustSucceed) fail(`load segment into ${pool}: ${r.status} ${r.body}`);
  return r;
}

// allocate asks pool for count numbers, checks the answer and records it.
export function allocate(pool, count, name) {
  const body = count === 1 ? '{}' : JSON.stringify({ count });
  const r = http.post(`${BASE}/v1/pools/${pool}/numbers`, body, params(name || 'allocate'));
  let numbers = null;
  if (r.status === 200) {
    try {
      numbers = r.json('numbers');
    } catch (e) {
      numbers = null;
    }
  }
  check(r, {
    'allocate: status 200': (res) => res.status === 200,
    'allocate: count numbers': () => Array.isArray(numbers) && numbers.length === count,
    'allocate: well-formed and ascending': () => Array.isArray(numbers) && wellFormed(numbers),
  });
  if (Array.isArray(numbers) && numbers.length > 0) {
    record(pool, numbers);
  }
  return r;
}

function wellFormed(numbers) {
  for (let i = 0; i < numbers.length; i++) {
    const n = numbers[i];
    if (typeof n !== 'string' || n.length !== DIGITS || !/^[0-9]+$/.test(n)) return false;
    if (i > 0 && !(numbers[i - 1] < n)) return false; // same width: string order is numeric order
  }
  return true;
}

// record writes one answer's numbers as runs of consecutive numbers. The tails
// compared are the last 12 digits, exact in a double; a run breaks when the
// digits above them change, which only costs an extra run.
export function record(pool, numbers) {
  const runs = [];
  let first = numbers[0];
  let count = 1;
  let head = first.slice(0, -12);
  let prev = parseInt(first.slice(-12), 10);
  for (let i = 1; i < numbers.length; i++) {
    const n = numbers[i];
    const h = n.slice(0, -12);
    const t = parseInt(n.slice(-12), 10);
    if (h === head && t === prev + 1) {
      count++;
    } else {
      runs.push(`${first}:${count}`);
      first = n;
      count = 1;
      head = h;
    }
    prev = t;
  }
  runs.push(`${first}:${count}`);
  console.log(`N\t${pool}\t${runs.join(' ')}`);
  numbersReceived.add(numbers.length);
}

// p99 is a threshold expression for P99_MS or the scenario's default.
export function p99(defaultMs) {
  return `p(99)<${envInt('P99_MS', defaultMs)}`;
}

// The thresholds every scenario shares: no failed request, every check passed.
export function commonThresholds() {
  return {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
  };
}

// seconds parses a k6 duration such as 20s, 5m or 1m30s.
export function seconds(d) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m;
  while ((m = re.exec(d)) !== null) {
    const v = parseFloat(m[1]);
    total += m[2] === 'ms' ? v / 1000 : m[2] === 's' ? v : m[2] === 'm' ? v * 60 : v * 3600;
  }
  return total;
}
