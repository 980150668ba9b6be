-- Postbacks with unique action ids when WRK_POSTBACK_CLICKID (one click: the
-- accept case) or WRK_POSTBACK_CLICKIDS (a file of clickids, taken in turn: the
-- keep-up case, where each converts) is set; otherwise the url as given.
-- done() prints one JSON line for bench/run.py.
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  n = 0
  clickid = os.getenv("WRK_POSTBACK_CLICKID")
  clickids = {}
  local path = os.getenv("WRK_POSTBACK_CLICKIDS")
  if path then
    for line in io.lines(path) do
      clickids[#clickids + 1] = line
    end
  end
  run = os.getenv("WRK_RUN") or "r"
end

function request()
  if clickid or #clickids > 0 then
    n = n + 1
    local id = clickid
    if #clickids > 0 then
      -- Two threads (bench/load.py): thread 1 takes the odd places, thread 2 the even.
      id = clickids[(2 * n + tid) % #clickids + 1]
    end
    return wrk.format("GET", "/postback?clickid=" .. id .. "&action_id=" .. run .. "-" .. tid .. "-" .. n .. "&sum=1.5")
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
