-- lease.lua: raise segments' leases after the store has reserved the numbers. Every
-- lease must be exactly what the store's reservation started from: a lease that
-- differs means this state and the store disagree (a seed from another generation,
-- a raise lost in a crash), and only a reseed may settle that. All or nothing,
-- except that a segment retired or expired since the caller looked keeps its
-- lease: nothing more goes out of it, and its close records the reserved numbers
-- it did not hand out as part of its gap.
--
-- KEYS[1]  numberd:{pool}:meta
-- KEYS[2]  numberd:{pool}:seg
-- ARGV[1]  gen the reservation was made under
-- ARGV[2]  k; then per segment: id, from (its lease now), to (its new lease)
--
-- Answer: OK, RESEED (state missing or from another run), or MISMATCH.

local run, repl = identity()
local meta = redis.call('HMGET', KEYS[1], 'run', 'repl', 'gen')
if meta[1] ~= run or meta[2] ~= repl or not meta[3] then
  return 'RESEED'
end
if meta[3] ~= ARGV[1] then
  return 'MISMATCH'
end
local k = tonumber(ARGV[2])
local open = {}
for i = 0, k - 1 do
  local id, from = ARGV[3 + i * 3], ARGV[4 + i * 3]
  if redis.call('HEXISTS', KEYS[2], id .. ':state') == 0 then
    if redis.call('HGET', KEYS[2], id .. ':lease') ~= from then
      return 'MISMATCH'
    end
    open[#open + 1] = i
  end
end
for _, i in ipairs(open) do
  redis.call('HSET', KEYS[2], ARGV[3 + i * 3] .. ':lease', ARGV[5 + i * 3])
end
return 'OK'
