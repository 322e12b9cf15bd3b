package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/internal/testenv"
)

// RedisServerBin is the redis-server binary: $NUMBERD_TEST_REDIS_SERVER, or the
// first on PATH. Its absence fails tb.
func RedisServerBin(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv(testenv.RedisServerEnv); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("%s is not set and redis-server is not on PATH: run the tests with `make test`", testenv.RedisServerEnv)
	}
	return bin
}

// Redis is a redis-server process (a server, or a Sentinel) that a test started on
// a free loopback port in a temporary directory, and may kill and start again. It
// keeps nothing on disk: a restart comes back empty.
type Redis struct {
	tb   testing.TB
	Name string
	Dir  string
	Port int
	// conf is the config file given first on the command line (Sentinel needs one).
	conf string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server on a free port with extra arguments and waits
// until it answers. It is killed when tb ends.
func StartRedis(tb testing.TB, name string, extra ...string) *Redis {
	tb.Helper()
	r := newRedis(tb, name, "", extra...)
	r.Start()
	return r
}

func newRedis(tb testing.TB, name, conf string, extra ...string) *Redis {
	r := &Redis{tb: tb, Name: name, Dir: tb.TempDir(), Port: testenv.FreePort(tb), conf: conf, args: extra}
	tb.Cleanup(func() {
		r.Kill()
		if tb.Failed() {
			tb.Logf("%s (%s), last log lines:\n%s", r.Name, r.Addr(), r.LogTail(15))
		}
	})
	return r
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// Start starts the server (again) on its port and waits until it answers PING.
func (r *Redis) Start() {
	r.tb.Helper()
	var args []string
	if r.conf != "" {
		args = append(args, r.conf)
	}
	args = append(args, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port), "--save", "", "--appendonly", "no",
		"--dir", r.Dir, "--logfile", filepath.Join(r.Dir, "redis.log"))
	args = append(args, r.args...)
	r.cmd = exec.Command(RedisServerBin(r.tb), args...)
	r.cmd.Dir = r.Dir
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start %s: %v", r.Name, err)
	}
	done := make(chan struct{})
	r.done = done
	cmd := r.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			r.tb.Fatalf("%s exited at start on %s:\n%s", r.Name, r.Addr(), r.LogTail(20))
		default:
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("%s on %s did not answer: %v\n%s", r.Name, r.Addr(), err, r.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL; what it held is gone.
func (r *Redis) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Restart kills the server and starts an empty one on the same port.
func (r *Redis) Restart() {
	r.tb.Helper()
	r.Kill()
	r.Start()
}

// Client returns a client of the server, closed when the test ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	r.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Info returns the fields of INFO section.
func (r *Redis) Info(ctx context.Context, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

func parseInfo(text string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// LogTail returns the last n lines of the server's log file.
func (r *Redis) LogTail(n int) string {
	f, err := os.Open(filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	return strings.Join(Tail(lines, n), "\n")
}

// StartReplica starts a redis-server that replicates primary (replicaof) and waits
// until its link to the primary is up and it has caught up.
func StartReplica(tb testing.TB, name string, primary *Redis) *Redis {
	tb.Helper()
	r := StartRedis(tb, name, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	WaitInSync(tb, primary, r)
	return r
}

// WaitInSync waits until replica's link to primary is up and its replication
// offset has reached the primary's.
func WaitInSync(tb testing.TB, primary, replica *Redis) {
	tb.Helper()
	ctx := context.Background()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		pi, err1 := primary.Info(ctx, "replication")
		ri, err2 := replica.Info(ctx, "replication")
		if err1 == nil && err2 == nil {
			po, _ := strconv.ParseInt(pi["master_repl_offset"], 10, 64)
			ro, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
			if ri["master_link_status"] == "up" && ro >= po {
				return
			}
			last = fmt.Sprintf("link %s, primary offset %d, replica offset %d", ri["master_link_status"], po, ro)
		} else {
			last = fmt.Sprint(err1, err2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s did not catch up with %s: %s", replica.Name, primary.Name, last)
}

// Sentinels are Redis Sentinel processes watching one master.
type Sentinels struct {
	Master string // the master's name, e.g. "mymaster"
	Procs  []*Redis
}

// StartSentinels starts n Sentinels (redis-server --sentinel, each with a config
// file of its own) watching primary under the name master, with a quorum of
// n/2+1, down-after 1 s and failover-timeout 3 s, and waits until each of them
// knows primary's replicas and the other Sentinels.
func StartSentinels(tb testing.TB, master string, primary *Redis, replicas, n int) *Sentinels {
	tb.Helper()
	s := &Sentinels{Master: master}
	for i := range n {
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 3000\n"+
			"sentinel parallel-syncs %[1]s 1\n", master, primary.Port, n/2+1)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		r := newRedis(tb, fmt.Sprintf("sentinel%d", i+1), conf, "--sentinel")
		r.Start()
		s.Procs = append(s.Procs, r)
	}
	ctx := context.Background()
	for _, p := range s.Procs {
		c := p.Client()
		var last string
		deadline := time.Now().Add(20 * time.Second)
		for {
			m, err := c.Do(ctx, "SENTINEL", "MASTER", master).Result()
			if err == nil {
				f := pairs(m)
				if f["num-slaves"] == strconv.Itoa(replicas) && f["num-other-sentinels"] == strconv.Itoa(n-1) {
					break
				}
				last = fmt.Sprintf("replicas %s, other sentinels %s", f["num-slaves"], f["num-other-sentinels"])
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s did not learn the topology: %s\n%s", p.Name, last, p.LogTail(20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return s
}

// URL is the --redis URL naming the Sentinels.
func (s *Sentinels) URL() string {
	addrs := make([]string, len(s.Procs))
	for i, p := range s.Procs {
		addrs[i] = p.Addr()
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + s.Master
}

// MasterAddr asks the first Sentinel that answers for the master's address.
func (s *Sentinels) MasterAddr(ctx context.Context) (string, error) {
	var err error
	for _, p := range s.Procs {
		c := redis.NewSentinelClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
		var addr []string
		addr, err = c.GetMasterAddrByName(ctx, s.Master).Result()
		_ = c.Close()
		if err == nil && len(addr) == 2 {
			return addr[0] + ":" + addr[1], nil
		}
	}
	return "", err
}

// Failover forces a failover with SENTINEL FAILOVER on the first Sentinel.
func (s *Sentinels) Failover(ctx context.Context) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Procs[0].Addr(), MaxRetries: -1})
	defer c.Close()
	return c.Failover(ctx, s.Master).Err()
}

// pairs turns a RESP2 flat list of fields and values (or a RESP3 map) into a map.
func pairs(v any) map[string]string {
	out := map[string]string{}
	switch x := v.(type) {
	case []any:
		for i := 0; i+1 < len(x); i += 2 {
			out[fmt.Sprint(x[i])] = fmt.Sprint(x[i+1])
		}
	case map[any]any:
		for k, val := range x {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// Cluster is a Redis Cluster of masters without replicas, each owning an equal
// share of the 16384 slots.
type Cluster struct {
	Nodes []*Redis
	// Slots[i] is the first..last slot that Nodes[i] owns.
	Slots [][2]int
}

// StartCluster starts masters cluster-enabled redis-servers, gives each a range of
// slots (CLUSTER ADDSLOTSRANGE), joins them (CLUSTER MEET) and waits until every
// node reports cluster_state:ok and knows every other.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	ctx := context.Background()
	c := &Cluster{}
	var buses []int
	for i := range masters {
		// The bus port is chosen free too: by default it is the port + 10 000,
		// which another process may hold.
		bus := testenv.FreePort(tb)
		n := StartRedis(tb, fmt.Sprintf("cluster%d", i+1), "--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		buses = append(buses, bus)
		c.Nodes = append(c.Nodes, n)
		lo := 16384 * i / masters
		hi := 16384*(i+1)/masters - 1
		c.Slots = append(c.Slots, [2]int{lo, hi})
	}
	for i, n := range c.Nodes {
		cl := n.Client()
		if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", c.Slots[i][0], c.Slots[i][1]).Err(); err != nil {
			tb.Fatalf("%s: CLUSTER ADDSLOTSRANGE: %v", n.Name, err)
		}
		if i > 0 {
			if err := cl.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.Nodes[0].Port, buses[0]).Err(); err != nil {
				tb.Fatalf("%s: CLUSTER MEET: %v", n.Name, err)
			}
		}
	}
	for _, n := range c.Nodes {
		cl := n.Client()
		var last string
		deadline := time.Now().Add(30 * time.Second)
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil {
				f := parseInfo(info)
				if f["cluster_state"] == "ok" && f["cluster_known_nodes"] == strconv.Itoa(masters) &&
					f["cluster_slots_assigned"] == "16384" {
					break
				}
				last = fmt.Sprintf("state %s, known nodes %s, slots %s", f["cluster_state"], f["cluster_known_nodes"], f["cluster_slots_assigned"])
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s: the cluster did not form: %s\n%s", n.Name, last, n.LogTail(20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL is the --redis URL naming every node.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// Owner returns the index of the node that owns key's slot (CLUSTER KEYSLOT).
func (c *Cluster) Owner(ctx context.Context, key string) (node, slot int, err error) {
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr(), MaxRetries: -1})
	defer cl.Close()
	s, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return -1, -1, err
	}
	for i, r := range c.Slots {
		if int(s) >= r[0] && int(s) <= r[1] {
			return i, int(s), nil
		}
	}
	return -1, int(s), fmt.Errorf("slot %d of %q is owned by no node", s, key)
}
