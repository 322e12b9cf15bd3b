-- allocate.lua: hand out numbers of one pool for a batch of requests, all or nothing
-- per request. Offsets count from a segment's first number, so every value here is
-- below 2^53 and exact in Lua's doubles; the caller turns offsets into numbers.
--
-- KEYS[1]   numberd:{pool}:meta  hash: run and repl (the Redis process and the
--                                 replication id the state was seeded under), gen
--                                 (seed generation), ver (raised by every change),
--                                 queue (open segment ids in allocation order,
--                                 comma-separated)
-- KEYS[2]   numberd:{pool}:seg   hash: ver (meta's, or one of the keys is not of
--                                 the same moment), <id>:size, <id>:used,
--                                 <id>:lease (numbers the store has reserved),
--                                 <id>:exp (ms, 0 = never), <id>:state (set once
--                                 retired or expired),
--                                 m:<call id> (the memo of a call: the Redis
--                                 time in ms, |, and its answer, or VOID; see below)
-- KEYS[2+i] numberd:{pool}:idem:<scope>:<key>  idempotency record of key i
-- ARGV[1]   this call's id: its memo, the field m:<id> of KEYS[2], keeps its
--           answer, so that a call retried after a lost reply answers again
--           instead of allocating twice, and so that what it took is known
--           should its caller never get the answer. A memo lives in the same key
--           as the counters it tells of: it is lost only with them, and then
--           the reseed's recovery gap covers what it took (see peek.lua)
-- ARGV[2]   idempotency record lifetime, seconds
-- ARGV[3]   the newest seed generation the caller has seen: a state of an older
--           one was superseded elsewhere (this server was failed over from and has
--           come back) and must not hand out what it still holds
-- ARGV[4]   the newest ver the caller has seen of generation ARGV[3]: a state below
--           it went back in time (keys restored from a dump, a copy of a copy) and
--           would hand out again what it handed out before
-- ARGV[5]   number of requests n
-- ARGV[6]   the numbers the n requests ask for together
-- ARGV[7]   each request's count, comma-separated, in order (- when n is 0)
-- ARGV[8]   each request's key index i, comma-separated (0: none), or - when no
--           request has a key; -i: key i's record, if Redis holds one, is of
--           numbers since abandoned, and the request takes new ones
-- ARGV[9]   the Redis time (ms) read before the caller last read the store's
--           checkpoints, which its floors come from (0: none read yet)
-- ARGV[10]  how old, in Redis time, those floors may be (ms; 0: any age): a
--           caller paused, or cut off from the store, brings older ones, and a
--           state restored meanwhile could pass for current; it is answered
--           STALE and reads them again
-- ARGV[10+i] the fingerprint of the request with key index i
-- ARGV[...] after the fingerprints: ids of calls whose answers their caller got,
--           whose memos are deleted here: a memo left in place is of a call
--           whose answer may not have reached anyone (see orphans.lua)
--
-- The requests come as two strings rather than three arguments each: per-request
-- arguments and their conversion to numbers were most of a call's cost, and the
-- common batch (no keys, all of it within the first segment's reserved numbers)
-- is answered without reading them.
--
-- Answer, space-separated tokens:
--   RESEED <why> <gen> the state cannot be used, and nothing was handed out. why:
--                    lost (missing), foreign (seeded on another process or
--                    replication history: restart, failover, flush), superseded
--                    (an older generation), behind (older than ARGV[4]), partial
--                    (a key or field missing or malformed); gen is the state's,
--                    or - when unknown
--   STALE            the caller's floors are too old (ARGV[9], ARGV[10]):
--                    nothing was handed out
--   VOID             this call was given up by its caller before it ran (see
--                    resolve.lua): nothing was handed out
--   OK <gen> <ver> <available> <leased> <n> <letters> <runs> [R:<spans>...] [E:<id>:<used>...]
--     letters holds one letter per request: A (allocated), R (replayed), C (key
--     reused for another request), X (not enough numbers), L (not enough reserved
--     numbers: wait for the lease to grow).
--     runs is what this call handed out, as <id>:<from>-<to>[,...] in allocation
--     order, or - for nothing: the A requests take their counts from it in turn,
--     so no request's numbers are formatted here.
--     An R:<spans> token follows for each R, in order; spans are runs' form.
--     E:<id>:<used> reports each segment this call found expired.
--     U:<id>:<used> follows, when a request was replayed, for each open segment:
--     the caller checks the state against its floors, as a replay's own numbers
--     lie below them by nature.
--
-- A key's record in Redis, fingerprint and spans, is of the generation it was
-- written in: a reseed (a state that went back, or was lost) leaves records of
-- numbers that may have gone to no one, and a newer generation ignores them.

if #ARGV < 10 then
  return redis.error_reply('allocate.lua: fewer than 10 arguments')
end

-- Spent memos go first: whatever this call answers, they are of no more use.
local nkeys = #KEYS - 2
for i = 11 + nkeys, #ARGV do
  redis.call('HDEL', KEYS[2], 'm:' .. ARGV[i])
end
local memoField = 'm:' .. ARGV[1]

local run, repl = identity()
local meta = redis.call('HMGET', KEYS[1], 'run', 'repl', 'gen', 'queue', 'ver')
if not meta[1] then
  return 'RESEED lost -'
end
local gen = tonumber(meta[3])
if not gen or not meta[4] then
  return 'RESEED partial -'
end
if meta[1] ~= run or meta[2] ~= repl then
  return 'RESEED foreign ' .. meta[3]
end
if gen < tonumber(ARGV[3]) then
  return 'RESEED superseded ' .. meta[3]
end
local memo = redis.call('HGET', KEYS[2], memoField)
if memo then
  return string.match(memo, '^%d+|(.*)$') or 'RESEED partial ' .. meta[3]
end
local ver = tonumber(meta[5] or '0')
if not ver or (redis.call('HGET', KEYS[2], 'ver') or '0') ~= (meta[5] or '0') then
  return 'RESEED partial ' .. meta[3]
end
if gen == tonumber(ARGV[3]) and ver < tonumber(ARGV[4]) then
  return 'RESEED behind ' .. meta[3]
end

local function fmt(x) return string.format('%d', x) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local maxAge = tonumber(ARGV[10])
if maxAge > 0 and now - tonumber(ARGV[9]) > maxAge then
  return 'STALE'
end

local open, expired = {}, {}
local changed = false
for id in string.gmatch(meta[4], '[^,]+') do
  local f = redis.call('HMGET', KEYS[2], id .. ':size', id .. ':used', id .. ':lease', id .. ':exp')
  local s = {id = id, size = tonumber(f[1]), used = tonumber(f[2]), lease = tonumber(f[3]), exp = tonumber(f[4])}
  if not (s.size and s.used and s.lease and s.exp) then
    return 'RESEED partial ' .. meta[3] -- part of the state was evicted or damaged
  end
  if s.exp > 0 and now >= s.exp then
    redis.call('HSET', KEYS[2], id .. ':state', 'expired')
    expired[#expired + 1] = 'E:' .. id .. ':' .. fmt(s.used)
    changed = true
  elseif s.used < s.size then
    open[#open + 1] = s
  else
    changed = true -- used up: leaves the queue
  end
end

local letters, replays = {}, {}
local n, total = tonumber(ARGV[5]), tonumber(ARGV[6])
local head = open[1]
if n > 0 and ARGV[8] == '-' and head and math.min(head.size, head.lease) - head.used >= total then
  -- No request has a key and the first segment's reserved numbers cover them
  -- all: each request takes its count in turn, which needs no look at the counts.
  head.first = head.used
  head.used = head.used + total
  letters = {string.rep('A', n)}
elseif n > 0 then
  local counts, kis = {}, {}
  for c in string.gmatch(ARGV[7], '%d+') do counts[#counts + 1] = tonumber(c) end
  if ARGV[8] ~= '-' then
    for k in string.gmatch(ARGV[8], '-?%d+') do kis[#kis + 1] = tonumber(k) end
  end
  for r = 1, n do
    local count, ki = counts[r], kis[r] or 0
    local fresh = ki < 0
    if fresh then ki = -ki end
    local fp = ki > 0 and ARGV[10 + ki]
    local rec = false
    if ki > 0 and not fresh then
      rec = redis.call('GET', KEYS[2 + ki])
    end
    local rgen, rfp, spans
    if rec then
      rgen, rfp, spans = string.match(rec, '^(%d+)|([^|]*)|(.*)$')
      if rgen ~= meta[3] then
        rec = false
      end
    end
    if rec then
      if rfp == fp then
        letters[r] = 'R'
        replays[#replays + 1] = 'R:' .. spans
      else
        letters[r] = 'C'
      end
    else
      local need, plan, reserved = count, {}, true
      for _, s in ipairs(open) do
        if need == 0 then break end
        local left = s.size - s.used
        if left > 0 then
          local take = math.min(need, left)
          if s.used + take > s.lease then reserved = false end
          plan[#plan + 1] = {s, take}
          need = need - take
        end
      end
      if need > 0 then
        letters[r] = 'X'
      elseif not reserved then
        letters[r] = 'L'
      else
        local parts = {}
        for _, p in ipairs(plan) do
          local s, take = p[1], p[2]
          s.first = s.first or s.used
          if ki > 0 then
            parts[#parts + 1] = s.id .. ':' .. fmt(s.used) .. '-' .. fmt(s.used + take - 1)
          end
          s.used = s.used + take
        end
        if ki > 0 then
          redis.call('SET', KEYS[2 + ki], meta[3] .. '|' .. fp .. '|' .. table.concat(parts, ','), 'EX', ARGV[2])
        end
        letters[r] = 'A'
      end
    end
  end
end

-- What this call handed out: from each segment it touched, one run, in order.
local runs = {}
for _, s in ipairs(open) do
  if s.first then
    runs[#runs + 1] = s.id .. ':' .. fmt(s.first) .. '-' .. fmt(s.used - 1)
  end
end

local queue, available, leased = {}, 0, 0
for _, s in ipairs(open) do
  if s.first then
    redis.call('HSET', KEYS[2], s.id .. ':used', fmt(s.used))
  end
  if s.used < s.size then
    queue[#queue + 1] = s.id
    available = available + s.size - s.used
    leased = leased + math.max(s.lease - s.used, 0)
  else
    changed = true
  end
end
if changed then
  redis.call('HSET', KEYS[1], 'queue', table.concat(queue, ','))
end
if changed or #runs > 0 then
  ver = ver + 1
  redis.call('HSET', KEYS[1], 'ver', fmt(ver))
  redis.call('HSET', KEYS[2], 'ver', fmt(ver))
end

local reply = 'OK ' .. meta[3] .. ' ' .. fmt(ver) .. ' ' .. fmt(available) .. ' ' .. fmt(leased) .. ' ' .. n .. ' ' ..
  (n > 0 and table.concat(letters) or '-') .. ' ' .. (#runs > 0 and table.concat(runs, ',') or '-')
if #replays > 0 then reply = reply .. ' ' .. table.concat(replays, ' ') end
if #expired > 0 then reply = reply .. ' ' .. table.concat(expired, ' ') end
if #replays > 0 then
  local used = {}
  for _, s in ipairs(open) do
    used[#used + 1] = 'U:' .. s.id .. ':' .. fmt(s.used)
  end
  if #used > 0 then reply = reply .. ' ' .. table.concat(used, ' ') end
end
if #runs > 0 then
  redis.call('HSET', KEYS[2], memoField, fmt(now) .. '|' .. reply)
end
return reply
