-- Paced wrk: each connection waits PACE_DELAY_MS after every response before
-- its next request, so CONNS connections offer about
-- CONNS * 1000 / (PACE_DELAY_MS + latency) requests per second. Used for
-- latency at a fixed fraction of the maximum rate (wrk itself has no rate).
local d = tonumber(os.getenv("PACE_DELAY_MS") or "0")

function delay()
  return d
end
