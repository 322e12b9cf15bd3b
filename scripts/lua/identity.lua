-- identity.lua: the identity of the data a script runs on, put before every script
-- that reads or writes a pool's state. A state is stamped with the run id of the
-- Redis process it was seeded on and with that process's replication id: a restart
-- changes the first, and a server that became a replica and was promoted again
-- (a failover and back) holds another server's older copy under its own run id,
-- but has a new replication id.

local function identity()
  local info = redis.call('INFO', 'server', 'replication')
  local a = string.find(info, 'run_id:', 1, true)
  local b = string.find(info, 'master_replid:', 1, true)
  return a and string.sub(info, a + 7, a + 46) or '?', b and string.sub(info, b + 14, b + 53) or '?'
end

