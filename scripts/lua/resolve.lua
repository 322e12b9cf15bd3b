-- resolve.lua: settle an allocate call whose answer never came back (a timeout, a
-- lost reply, Redis paused past the caller's patience). If the call ran, its memo
-- tells what it handed out; if it has not run, a tombstone in its memo's place
-- makes it hand out nothing should it run later (allocate.lua answers a memo
-- before anything else). Once what it took is recorded, the memo is closed:
-- replaced by a tombstone, for the same reason.
--
-- KEYS[1]  numberd:{pool}:seg
-- ARGV[1]  the call's id (its memo is the field m:<id>)
-- ARGV[2]  read: answer the memo, or leave a tombstone and answer VOID;
--          close: leave a tombstone, the call being settled
--
-- A tombstone is VOID stamped with Redis's time, as memos are: orphans.lua
-- deletes it once no call can linger that long in a socket or a paused server.
--
-- Answer: the call's memo (its allocate answer), or VOID.

local field = 'm:' .. ARGV[1]
local memo = redis.call('HGET', KEYS[1], field)
if memo and ARGV[2] == 'read' then
  local reply = string.match(memo, '^%d+|(.*)$')
  if reply then
    return reply
  end
end
if memo and string.match(memo, '^%d+|VOID$') then
  return 'VOID'
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], field, string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) .. '|VOID')
return 'VOID'
