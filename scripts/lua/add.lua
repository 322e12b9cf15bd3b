-- add.lua: append segments the store has and this state lacks to the allocation
-- queue, keeping the store's order. A new segment joins with no lease, so nothing
-- of it is handed out before the store reserves it. Segments retired or expired
-- here are never added back.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV[1]  gen the caller read the segments under
-- ARGV[2]  k; then per segment in allocation order: id, size, used (also the
--          lease: what the store has reserved of it), exp (ms, 0 = never)
--
-- Answer: OK <added>, RESEED (state missing or from another run), or MISMATCH
-- (another generation).

local run, repl = identity()
local m = redis.call('HMGET', KEYS[1], 'run', 'repl', 'gen', 'queue', 'ver')
local gen, queue0, ver = m[3], m[4], m[5] or '0'
if m[1] ~= run or m[2] ~= repl or not gen or not queue0 or (redis.call('HGET', KEYS[2], 'ver') or '0') ~= ver then
  return 'RESEED'
end
-- bump marks a change, so that a node that saw it refuses a state from before it.
local function bump()
  local v = string.format('%d', tonumber(ver) + 1)
  redis.call('HSET', KEYS[1], 'ver', v)
  redis.call('HSET', KEYS[2], 'ver', v)
end
if gen ~= ARGV[1] then
  return 'MISMATCH'
end
local queued = {}
for id in string.gmatch(queue0, '[^,]+') do queued[id] = true end
local queue, added = {}, 0
local at = 3
for _ = 1, tonumber(ARGV[2]) do
  local id, size, used, exp = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  at = at + 4
  if queued[id] then
    queue[#queue + 1] = id
  elseif redis.call('HEXISTS', KEYS[2], id .. ':size') == 0 and redis.call('HEXISTS', KEYS[2], id .. ':state') == 0
      and tonumber(used) < tonumber(size) then
    redis.call('HSET', KEYS[2], id .. ':size', size, id .. ':used', used, id .. ':lease', used, id .. ':exp', exp)
    queue[#queue + 1] = id
    added = added + 1
  end
end
-- Segments queued here but not passed in stay, in their order, after the others.
local listed = {}
for _, id in ipairs(queue) do listed[id] = true end
for id in string.gmatch(queue0, '[^,]+') do
  if not listed[id] then queue[#queue + 1] = id end
end
redis.call('HSET', KEYS[1], 'queue', table.concat(queue, ','))
if added > 0 then bump() end
return 'OK ' .. added
