-- wrk script of scripts/bench.sh: POST the allocation route with a JSON body.
--
--   WRK_BODY='{"count":1000}' wrk -t2 -c64 -d10s -s test/load/wrk/post.lua http://127.0.0.1:8080/v1/pools/p/numbers
--
-- WRK_POOLS (optional): a comma-separated list of pools; each request then goes
-- to the next pool in turn (the URL's path is replaced). Without it every
-- request is the same prepared one, the cheapest wrk can send.
--
-- done() prints one machine-readable line for the script:
--   RESULT requests=… rps=… p50_us=… p99_us=… max_us=… errors=… non2xx=…
-- errors counts connect, read, write and timeout errors; non2xx the answers
-- with a status of 400 or more (wrk counts those as "status" errors).
local body = os.getenv("WRK_BODY") or '{"count":1}'
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("NUMBERD_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local pools = {}
for p in string.gmatch(os.getenv("WRK_POOLS") or "", "[^,]+") do
  pools[#pools + 1] = p
end

if #pools > 0 then
  local requests, i = {}, 0
  init = function(args)
    for k, p in ipairs(pools) do
      requests[k] = wrk.format(nil, "/v1/pools/" .. p .. "/numbers")
    end
  end
  request = function()
    i = i % #requests + 1
    return requests[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%d non2xx=%d\n",
    summary.requests, summary.requests / secs, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
