-- One request shape per wrk run, from the environment (set by benches/soak.sh):
--   SOAK_METHOD, SOAK_BODY, SOAK_H1..SOAK_H4 ("Name: value"), SOAK_EXPECT (status).
-- Counts every response whose status is not SOAK_EXPECT and prints one
-- machine-readable SOAK line at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expect = tonumber(os.getenv("SOAK_EXPECT") or "200")
  unexpected = 0
  last_unexpected = 0
  wrk.method = os.getenv("SOAK_METHOD") or "GET"
  local body = os.getenv("SOAK_BODY")
  if body and body ~= "" then
    wrk.body = body
  end
  for i = 1, 4 do
    local h = os.getenv("SOAK_H" .. i)
    if h and h ~= "" then
      local k, v = h:match("^([^:]+):%s*(.*)$")
      wrk.headers[k] = v
    end
  end
  req = wrk.format()
end

function request()
  return req
end

function response(status, headers, body)
  if status ~= expect then
    unexpected = unexpected + 1
    last_unexpected = status
  end
end

function done(summary, latency, requests)
  local u, last = 0, 0
  for _, t in ipairs(threads) do
    u = u + t:get("unexpected")
    if t:get("last_unexpected") ~= 0 then
      last = t:get("last_unexpected")
    end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d unexpected=%d last_unexpected=%d socket_errors=%d timeouts=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, u, last, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
