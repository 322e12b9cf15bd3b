-- peek.lua: read a pool's state without changing it.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV     segment ids to report
--
-- Answer: RESEED, or OK <gen> <queue or -> then per id: <id>:<used>:<lease>:<state>
-- with - for a missing field.

local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local meta = redis.call('HMGET', KEYS[1], 'run', 'gen', 'queue')
if meta[1] ~= run or not meta[2] or not meta[3] then
  return 'RESEED'
end
local out = {'OK', meta[2], meta[3] ~= '' and meta[3] or '-'}
for _, id in ipairs(ARGV) do
  local f = redis.call('HMGET', KEYS[2], id .. ':used', id .. ':lease', id .. ':state')
  out[#out + 1] = id .. ':' .. (f[1] or '-') .. ':' .. (f[2] or '-') .. ':' .. (f[3] or '-')
end
return table.concat(out, ' ')
