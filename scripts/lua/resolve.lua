-- resolve.lua: settle an allocate call whose answer never came back (a timeout, a
-- lost reply, Redis paused past the caller's patience). If the call ran, its memo
-- tells what it handed out; if it has not run, a tombstone in its memo's place
-- makes it hand out nothing should it run later (allocate.lua answers a memo
-- before anything else).
--
-- KEYS[1]  numberd:{pool}:memo:<call id>
-- ARGV[1]  the tombstone's lifetime, seconds: longer than a call can linger
--
-- Answer: the call's memo (its allocate answer), or VOID.

local memo = redis.call('GET', KEYS[1])
if memo then
  return memo
end
redis.call('SET', KEYS[1], 'VOID', 'EX', ARGV[1])
return 'VOID'
