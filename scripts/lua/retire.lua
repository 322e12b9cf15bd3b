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

local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local meta = redis.call('HMGET', KEYS[1], 'run', 'gen', 'queue')
if meta[1] ~= run or not meta[2] or not meta[3] then
  return 'RESEED'
end
local id = ARGV[1]
local used = redis.call('HGET', KEYS[2], id .. ':used')
if redis.call('HEXISTS', KEYS[2], id .. ':state') == 0 then
  redis.call('HSET', KEYS[2], id .. ':state', ARGV[2])
end
if not used then
  return 'ABSENT ' .. meta[2]
end
local queue = {}
for q in string.gmatch(meta[3], '[^,]+') do
  if q ~= id then queue[#queue + 1] = q end
end
redis.call('HSET', KEYS[1], 'queue', table.concat(queue, ','))
return 'OK ' .. used .. ' ' .. meta[2]
