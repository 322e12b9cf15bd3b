-- orphans.lua: a pool's memos left in place (see allocate.lua): those older than
-- a call can be answered in are of calls whose answers may have reached no one,
-- and whose numbers no one is settling; the caller records them. Tombstones
-- older than any call can linger are deleted here.
--
-- KEYS[1]  numberd:{pool}:seg
-- ARGV[1]  how old, in Redis time (ms), a memo must be to be answered
-- ARGV[2]  how old a tombstone must be to be deleted (ms)
--
-- Answer: one line per memo, in no order: the call's id, a space, and its memo
-- (its allocate answer), or ? for a memo that cannot be read (its state was
-- damaged).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local id = string.match(fields[i], '^m:(.+)$')
  if id then
    local at, reply = string.match(fields[i + 1], '^(%d+)|(.*)$')
    at = tonumber(at)
    if not at then
      out[#out + 1] = id .. ' ?'
    elseif reply == 'VOID' then
      if now - at > tonumber(ARGV[2]) then
        redis.call('HDEL', KEYS[1], fields[i])
      end
    elseif now - at > tonumber(ARGV[1]) then
      out[#out + 1] = id .. ' ' .. reply
    end
  end
end
return table.concat(out, '\n')
