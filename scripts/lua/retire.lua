-- retire.lua: take a segment out of the allocation queue for good.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV[1]  segment id
-- ARGV[2]  state to record: retired
--
-- Answer: OK <used> <gen> (retired now or before: used is what was handed out
-- of it), ABSENT <gen> (this state never had the segment; it is marked retired
-- so that no later add brings it in), or RESEED. gen is the state's generation:
-- used holds only for it.

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
local id = ARGV[1]
local used = redis.call('HGET', KEYS[2], id .. ':used')
if redis.call('HEXISTS', KEYS[2], id .. ':state') == 0 then
  redis.call('HSET', KEYS[2], id .. ':state', ARGV[2])
  bump()
end
if not used then
  return 'ABSENT ' .. gen
end
local queue = {}
for q in string.gmatch(queue0, '[^,]+') do
  if q ~= id then queue[#queue + 1] = q end
end
redis.call('HSET', KEYS[1], 'queue', table.concat(queue, ','))
return 'OK ' .. used .. ' ' .. gen
