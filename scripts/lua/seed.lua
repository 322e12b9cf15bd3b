-- seed.lua: write a pool's state afresh, stamped with this Redis process's run id
-- and replication id (see identity.lua).
-- A seed hands out nothing by itself: every segment's lease equals its used count,
-- so numbers flow only once the store reserves more and lease.lua raises the lease.
-- That makes a late or repeated seed harmless.
--
-- The state it replaces hands out numbers until this very call: the store moved
-- on first, and allocate.lua looks at neither the store nor the lease lock. So the
-- answer says how far that state went, when it could be used (this server's, of
-- one moment, every queued segment whole): none of its numbers above that went
-- out, and the caller's recovery gap can start there.
--
-- The memos of calls (fields m:<id>, see allocate.lua) are carried over: each
-- tells of numbers a call took, which are yet to reach a caller or a gap, or is
-- a tombstone that keeps a lingering call from running.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV[1]  gen, the store's seed generation for this state
-- ARGV[2]  k, the number of open segments; then per segment in allocation order:
--          id, size, used (also the lease), exp (ms, 0 = never)
--
-- Answer: the run id the state was stamped with, then - when no usable state was
-- replaced, or else the replaced state's gen and ver and <id>:<used> for each of
-- its segments. Or NEWER <gen>, changing nothing, when this server holds a state
-- of a later generation: another node reseeded after this caller's store moved,
-- and its seed arrived first (a caller slowed on its way to the store or here).

local run, repl = identity()
local old = '-'
local m = redis.call('HMGET', KEYS[1], 'run', 'repl', 'gen', 'queue', 'ver')
if m[1] == run and m[2] == repl and tonumber(m[3]) and tonumber(m[3]) > tonumber(ARGV[1]) then
  return 'NEWER ' .. m[3]
end
local fields = redis.call('HGETALL', KEYS[2])
if m[1] == run and m[2] == repl and tonumber(m[3]) and m[4] and tonumber(m[5] or '0')
    and (redis.call('HGET', KEYS[2], 'ver') or '0') == (m[5] or '0') then
  local usable = true
  for id in string.gmatch(m[4], '[^,]+') do
    local f = redis.call('HMGET', KEYS[2], id .. ':size', id .. ':used', id .. ':lease', id .. ':exp')
    if not (tonumber(f[1]) and tonumber(f[2]) and tonumber(f[3]) and tonumber(f[4])) then
      usable = false
    end
  end
  if usable then
    local out = {m[3], m[5] or '0'}
    for i = 1, #fields, 2 do
      local id = string.match(fields[i], '^(%d+):used$')
      if id and tonumber(fields[i + 1]) then
        out[#out + 1] = id .. ':' .. fields[i + 1]
      end
    end
    old = table.concat(out, ' ')
  end
end

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
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'm:' then
    redis.call('HSET', KEYS[2], fields[i], fields[i + 1])
  end
end
-- The report stays in the new state (replaced), for a caller whose reply is lost:
-- it reads it back to narrow its recovery gaps all the same.
redis.call('HSET', KEYS[1], 'run', run, 'repl', repl, 'gen', ARGV[1], 'ver', '1', 'queue', table.concat(ids, ','),
  'replaced', old)
return run .. ' ' .. old
