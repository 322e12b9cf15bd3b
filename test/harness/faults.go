package harness

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Faults of a Redis server, for tests that break what numberd relies on the way
// operations do: a failover to a copy and back, a key-level restore from a dump, a
// lost key, a flush, a frozen process, eviction under memory pressure.
//
// Unlike the methods of redis.go these report failures as errors instead of
// failing the test, so that a nemesis may inject them from a goroutine of its own
// (t.Fatal may be called only from the test's goroutine). Each bounds its work by
// ctx; none keeps a connection open after it returns.

// conn returns a new client of the server; the caller closes it.
func (r *Redis) conn() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
}

// do sends one command to the server on a connection of its own.
func (r *Redis) do(ctx context.Context, args ...any) error {
	c := r.conn()
	defer c.Close()
	if err := c.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("%s: %v: %w", r.Name, args, err)
	}
	return nil
}

// Pause stops the server with SIGSTOP, as a frozen VM, a swapped-out process or a
// long fork would: connections stay open and the kernel keeps accepting new ones
// and queueing what clients send, but nothing is answered until Resume. Commands
// queued meanwhile run when it resumes, though their senders may have given up.
// A paused server is still killed when the test ends.
func (r *Redis) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume continues a server stopped by Pause with SIGCONT.
func (r *Redis) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) error {
	if r.cmd == nil || r.cmd.Process == nil {
		return fmt.Errorf("%s is not running", r.Name)
	}
	select {
	case <-r.done:
		return fmt.Errorf("%s has exited", r.Name)
	default:
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling %s: %w", r.Name, err)
	}
	return nil
}

// FlushAll empties the server (FLUSHALL): every key of every database is gone,
// the process and its run id stay.
func (r *Redis) FlushAll(ctx context.Context) error { return r.do(ctx, "FLUSHALL") }

// DelKeys deletes keys (DEL), as the eviction of single keys would, and returns
// how many existed.
func (r *Redis) DelKeys(ctx context.Context, keys ...string) (int64, error) {
	c := r.conn()
	defer c.Close()
	n, err := c.Del(ctx, keys...).Result()
	if err != nil {
		return 0, fmt.Errorf("%s: DEL %v: %w", r.Name, keys, err)
	}
	return n, nil
}

// Keys lists the keys matching the glob pattern (SCAN MATCH), e.g.
// "numberd:{pool}:*" for one pool's keys (braces are not special in a pattern).
func (r *Redis) Keys(ctx context.Context, pattern string) ([]string, error) {
	c := r.conn()
	defer c.Close()
	var out []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("%s: SCAN %s: %w", r.Name, pattern, err)
	}
	return out, nil
}

// DumpedKey is one key of a KeyDump: its value serialized by DUMP and the time it
// had left to live when dumped (0: no expiry).
type DumpedKey struct {
	Key   string
	Value string
	TTL   time.Duration
}

// KeyDump is a snapshot of keys taken by DumpKeys, to be written back by
// RestoreKeys: what a key-level backup and restore (DUMP, RESTORE … REPLACE)
// does, or a migration tool that copies keys between servers.
type KeyDump []DumpedKey

// Names lists the dumped keys.
func (d KeyDump) Names() []string {
	out := make([]string, len(d))
	for i, k := range d {
		out[i] = k.Key
	}
	return out
}

// DumpKeys dumps every key matching pattern (see Keys) with its time to live. The
// keys found are dumped in one MULTI/EXEC, so the snapshot is consistent across
// them, as a backup taken at one instant is; a key gone since it was listed is
// left out.
func (r *Redis) DumpKeys(ctx context.Context, pattern string) (KeyDump, error) {
	keys, err := r.Keys(ctx, pattern)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	c := r.conn()
	defer c.Close()
	dumps := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			dumps[i] = p.Dump(ctx, k)
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: DUMP %s: %w", r.Name, pattern, err)
	}
	var out KeyDump
	for i, k := range keys {
		v, err := dumps[i].Result()
		if errors.Is(err, redis.Nil) {
			continue // gone since SCAN
		}
		if err != nil {
			return nil, fmt.Errorf("%s: DUMP %s: %w", r.Name, k, err)
		}
		ttl := ttls[i].Val()
		if ttl < 0 {
			ttl = 0 // -1: no expiry
		}
		out = append(out, DumpedKey{Key: k, Value: v, TTL: ttl})
	}
	return out, nil
}

// RestoreKeys writes dump back with RESTORE … REPLACE, in one MULTI/EXEC: each key
// gets its dumped value and the time to live it had left when dumped. A key that
// exists now is overwritten; one created since the dump and not in it stays. The
// server may be the one dumped or another.
func (r *Redis) RestoreKeys(ctx context.Context, dump KeyDump) error {
	if len(dump) == 0 {
		return nil
	}
	c := r.conn()
	defer c.Close()
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range dump {
			p.RestoreReplace(ctx, k.Key, k.TTL, k.Value)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: RESTORE of %d keys: %w", r.Name, len(dump), err)
	}
	return nil
}

// SetMaxMemory sets maxmemory to bytes (0: no limit) and the eviction policy
// (maxmemory-policy, e.g. "allkeys-lru", "allkeys-random", "volatile-ttl",
// "noeviction"). With a limit below what the server holds, Redis evicts keys as
// the policy says at the next write, and with noeviction refuses writes (OOM).
// See UsedMemory.
func (r *Redis) SetMaxMemory(ctx context.Context, bytes int64, policy string) error {
	return r.do(ctx, "CONFIG", "SET", "maxmemory", bytes, "maxmemory-policy", policy)
}

// UsedMemory is the server's used_memory, in bytes: a base for SetMaxMemory.
func (r *Redis) UsedMemory(ctx context.Context) (int64, error) {
	return r.InfoInt(ctx, "memory", "used_memory")
}

// InfoInt returns the integer field of INFO section, e.g. ("stats",
// "evicted_keys") or ("stats", "total_commands_processed").
func (r *Redis) InfoInt(ctx context.Context, section, field string) (int64, error) {
	info, err := r.Info(ctx, section)
	if err != nil {
		return 0, fmt.Errorf("%s: INFO %s: %w", r.Name, section, err)
	}
	v, ok := info[field]
	if !ok {
		return 0, fmt.Errorf("%s: INFO %s has no field %s", r.Name, section, field)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: INFO %s: %s is %q, not an integer", r.Name, section, field, v)
	}
	return n, nil
}

// CommandCalls is how many times the server ran command (lower case, e.g.
// "evalsha") since it started or since CONFIG RESETSTAT, from INFO commandstats;
// 0 if never.
func (r *Redis) CommandCalls(ctx context.Context, command string) (int64, error) {
	info, err := r.Info(ctx, "commandstats")
	if err != nil {
		return 0, fmt.Errorf("%s: INFO commandstats: %w", r.Name, err)
	}
	stats, ok := info["cmdstat_"+strings.ToLower(command)]
	if !ok {
		return 0, nil
	}
	for f := range strings.SplitSeq(stats, ",") {
		if v, ok := strings.CutPrefix(f, "calls="); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: cmdstat_%s has no calls: %q", r.Name, command, stats)
}

// RunID is the server process's run_id: it changes at every start, and only then.
func (r *Redis) RunID(ctx context.Context) (string, error) {
	info, err := r.Info(ctx, "server")
	if err != nil {
		return "", fmt.Errorf("%s: INFO server: %w", r.Name, err)
	}
	return info["run_id"], nil
}

// ReplicationID is the server's master_replid: the history of data it serves. It
// changes when a replica is promoted, and a server that replicated another takes
// that one's; the run id stays.
func (r *Redis) ReplicationID(ctx context.Context) (string, error) {
	info, err := r.Info(ctx, "replication")
	if err != nil {
		return "", fmt.Errorf("%s: INFO replication: %w", r.Name, err)
	}
	return info["master_replid"], nil
}

// ReplicaOf makes r a replica of primary (REPLICAOF host port). It returns at
// once; r drops its data for primary's once the two have synced (AwaitSync).
// While a replica, r refuses writes (READONLY).
func (r *Redis) ReplicaOf(ctx context.Context, primary *Redis) error {
	return r.do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(primary.Port))
}

// Promote makes r a primary (REPLICAOF NO ONE): it keeps the data it has, stops
// following its primary and takes writes, under a new replication id.
func (r *Redis) Promote(ctx context.Context) error {
	return r.do(ctx, "REPLICAOF", "NO", "ONE")
}

// AwaitSync waits until replica's link to primary is up and its replication offset
// has reached the primary's, or ctx ends. It is WaitInSync returning an error.
func AwaitSync(ctx context.Context, primary, replica *Redis) error {
	last := "not asked yet"
	for {
		pi, err1 := primary.Info(ctx, "replication")
		ri, err2 := replica.Info(ctx, "replication")
		if err := errors.Join(err1, err2); err != nil {
			last = err.Error()
		} else {
			po, _ := strconv.ParseInt(pi["master_repl_offset"], 10, 64)
			ro, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
			if ri["master_link_status"] == "up" && ri["master_port"] == strconv.Itoa(primary.Port) && ro >= po {
				return nil
			}
			last = fmt.Sprintf("link %s, primary offset %d, replica offset %d", ri["master_link_status"], po, ro)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not catch up with %s: %s: %w", replica.Name, primary.Name, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Follow makes replica a replica of primary (REPLICAOF) and waits until its link
// is up and it has caught up: it then holds primary's data, whatever it held
// before, and refuses writes until promoted. It also sets primary's
// repl-diskless-sync-delay to 0: by default a full sync waits 5 s for more
// replicas to share the transfer. Follow(b, a) after Split(a, b) readies b for
// the next Split.
func Follow(ctx context.Context, replica, primary *Redis) error {
	if err := primary.do(ctx, "CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		return err
	}
	if err := replica.ReplicaOf(ctx, primary); err != nil {
		return err
	}
	return AwaitSync(ctx, primary, replica)
}

// Split is the first half of a failover and back: it waits until replica, a
// replica of primary, has caught up, then promotes it (REPLICAOF NO ONE). replica
// now holds a copy of primary's data frozen at that instant, while primary, which
// numberd still uses, goes on: allocate on it to put the copy behind.
func Split(ctx context.Context, primary, replica *Redis) error {
	if err := AwaitSync(ctx, primary, replica); err != nil {
		return err
	}
	return replica.Promote(ctx)
}

// FailBack is the second half: primary follows stale (see Follow), taking its
// data, and is promoted again (REPLICAOF NO ONE). What Sentinel does when it fails
// over to a lagging replica and back: primary is the same process with the same
// run id, under a new replication id, and its data is stale's, older than what was
// handed out from it. numberd's connections to primary stay open throughout; while
// it is a replica its writes are refused (READONLY).
func FailBack(ctx context.Context, primary, stale *Redis) error {
	if err := Follow(ctx, primary, stale); err != nil {
		return err
	}
	return primary.Promote(ctx)
}

// FailoverAndBack runs Split, meanwhile (which allocates on primary, putting the
// copy behind) and FailBack, stopping at the first error. replica must replicate
// primary; afterwards it is a primary of its own (Follow makes it a replica
// again).
func FailoverAndBack(ctx context.Context, primary, replica *Redis, meanwhile func() error) error {
	if err := Split(ctx, primary, replica); err != nil {
		return err
	}
	if err := meanwhile(); err != nil {
		return err
	}
	return FailBack(ctx, primary, replica)
}
