-- peek.lua: read a pool's state without changing it, whether or not it can be used:
-- a reseed starts above what even an unusable state shows.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV     segment ids to report
--
-- Answer: <status> <gen> <ver> <queue> then per id: <id>:<used>:<lease>:<state>:<memo>,
-- with - for a missing field or queue. status is OK, or RESEED when the state is
-- missing, foreign (seeded on another process or replication history), or partial
-- (meta and seg not of one moment, or a queued segment's field missing).
-- memo is the first number (an offset) of the segment that a call took whose memo
-- is still in place (see allocate.lua), the lowest of them: its caller may not
-- have got it, and it is yet to be recorded. A checkpoint records how far below
-- its cursor that lies, so that a reseed after the loss of the state, memos and
-- all, records those numbers as recovery.

local run, repl = identity()
local m = redis.call('HMGET', KEYS[1], 'run', 'repl', 'gen', 'queue', 'ver')
local status = 'OK'
if m[1] ~= run or m[2] ~= repl or not tonumber(m[3]) or not m[4]
    or (redis.call('HGET', KEYS[2], 'ver') or '0') ~= (m[5] or '0') then
  status = 'RESEED'
else
  for id in string.gmatch(m[4], '[^,]+') do
    local f = redis.call('HMGET', KEYS[2], id .. ':size', id .. ':used', id .. ':lease', id .. ':exp')
    if not (tonumber(f[1]) and tonumber(f[2]) and tonumber(f[3]) and tonumber(f[4])) then
      status = 'RESEED'
    end
  end
end

local low = {}
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'm:' then
    local runs = string.match(fields[i + 1], '^%d+|OK %S+ %S+ %S+ %S+ %S+ %S+ (%S+)')
    for id, from in string.gmatch(runs or '', '(%d+):(%d+)%-%d+') do
      from = tonumber(from)
      if not low[id] or from < low[id] then
        low[id] = from
      end
    end
  end
end

local out = {status, m[3] or '-', m[5] or '0', (m[4] and m[4] ~= '') and m[4] or '-'}
for _, id in ipairs(ARGV) do
  local f = redis.call('HMGET', KEYS[2], id .. ':used', id .. ':lease', id .. ':state')
  out[#out + 1] = id .. ':' .. (f[1] or '-') .. ':' .. (f[2] or '-') .. ':' .. (f[3] or '-') .. ':' ..
    (low[id] and string.format('%d', low[id]) or '-')
end
return table.concat(out, ' ')
