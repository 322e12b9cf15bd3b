-- seed.lua: write a pool's state afresh, stamped with this Redis process's run id
-- and replication id (see identity.lua).
-- A seed hands out nothing by itself: every segment's lease equals its used count,
-- so numbers flow only once the store reserves more and lease.lua raises the lease.
-- That makes a late or repeated seed harmless.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV[1]  gen, the store's seed generation for this state
-- ARGV[2]  k, the number of open segments; then per segment in allocation order:
--          id, size, used (also the lease), exp (ms, 0 = never)
--
-- Answer: the run id the state was stamped with.

local run, repl = identity()
redis.call('DEL', KEYS[1], KEYS[2])
local ids = {}
local at = 3
for _ = 1, tonumber(ARGV[2]) do
  local id, size, used, exp = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  at = at + 4
  redis.call('HSET', KEYS[2], id .. ':size', size, id .. ':used', used, id .. ':lease', used, id .. ':exp', exp)
  ids[#ids + 1] = id
end
redis.call('HSET', KEYS[2], 'ver', '1')
redis.call('HSET', KEYS[1], 'run', run, 'repl', repl, 'gen', ARGV[1], 'ver', '1', 'queue', table.concat(ids, ','))
return run
