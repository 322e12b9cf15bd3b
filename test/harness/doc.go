// Package harness runs numberd as real processes for acceptance tests: it builds
// the numberd binary once per test binary; starts, stops, kills, pauses (SIGSTOP)
// and restarts numberd nodes, distributed or embedded, and `numberd upstream-sim`
// processes; runs numberd commands, and nodes that must refuse to start, to their
// end; writes numberd's configuration file (tokens, upstreams); starts
// redis-server topologies (single server, replica, Sentinel, Cluster) on free
// loopback ports in temporary directories; puts a TCP proxy (toxiproxy, run
// in-process) between numberd and its stores so a test can cut or redirect their
// connections; talks to the REST API; and keeps a ledger of every number handed
// out that fails the test on a duplicate.
//
// A test package using it calls Main from its TestMain, so the binary it built is
// removed at the end:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// A TestMain that starts a node for all its tests to share does it with Launch,
// which belongs to no test, and calls RemoveBinary at its end instead.
//
// Everything here listens on and dials loopback addresses only.
package harness
