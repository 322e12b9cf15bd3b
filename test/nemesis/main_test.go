// Package nemesis is numberd's Jepsen-style test: three real numberd
// nodes share a Redis primary, which has a replica, and a MariaDB database; both
// stores are reached through toxiproxy. Clients with and without
// Idempotency-Keys allocate from a few pools on random nodes while a seeded
// random schedule of faults runs on two lanes at once: the nodes (kill -9 and
// restart, SIGSTOP and SIGCONT) and the stores (Redis FLUSHALL, kill and
// restart, failover to a lagging replica and back, a rollback in place,
// DUMP/RESTORE of keys, DEL of one key, eviction under memory pressure, SIGSTOP
// past the request timeout; MySQL cut and blackholed). At the end, with every
// fault healed and the system settled, a checker reads every answer and the
// pools' segments and gaps and asserts:
//
//	(a) no number was handed out twice, across all answers of all nodes;
//	(b) every number lies inside a segment loaded into its pool;
//	(c) every number below a segment's cursor was handed out or lies in a gap,
//	    but for at most as many as the calls that broke off without an answer
//	    asked for (a client timeout, a connection cut by a kill), and none
//	    taken while no such call was in flight (a 503 says nothing was taken);
//	(d) a replayed Idempotency-Key answers the numbers of its first answer;
//
// and, as the contract says too, that every answer is 200 or 503 unavailable
// with well-formed numbers, that no number handed out lies at or above its
// segment's cursor or inside an `abandoned` gap, and that every node serves
// every pool again after the faults are healed.
//
//	make nemesis                     # one minute, the fixed seed
//	NEMESIS=30m make nemesis         # thirty minutes, a random seed it prints
//	NEMESIS=30m NEMESIS_SEED=42 make nemesis
//
// A run writes report.txt and schedule.txt under .tmp/nemesis/<time>-seed<seed>/
// in the repository, and on failure also history.jsonl (every request), state.json
// (the pools' segments and gaps at the end) and the nodes' logs.
//
// `make test` runs it for a minute with the fixed seed, like every other package.
package nemesis_test

import (
	"testing"

	"github.com/numberd/numberd/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
