-- Unique action ids per request when WRK_POSTBACK_CLICKID is set (the accept
-- case); otherwise the url as given. done() prints one JSON line for bench/run.py.
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  n = 0
  clickid = os.getenv("WRK_POSTBACK_CLICKID")
  run = os.getenv("WRK_RUN") or "r"
end

function request()
  if clickid then
    n = n + 1
    return wrk.format("GET", "/postback?clickid=" .. clickid .. "&action_id=" .. run .. "-" .. tid .. "-" .. n .. "&sum=1.5")
  end
  return wrk.format(nil)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "socket_errors": %d, "bad_status": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
