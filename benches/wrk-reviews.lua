-- wrk script of the webhook benchmark: POSTs the AdmissionReview bodies of a JSON-lines
-- file (the first script argument) in turn, and prints a JSON summary line at the end.
-- Requests are formatted once in init, so that wrk's one thread spends its time sending.

local requests = {}
local position = 0

function init(args)
  local path = args[1]
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", "/mutate", { ["Content-Type"] = "application/json" }, line)
    end
  end
  file:close()
  assert(#requests > 0, path .. " contains no bodies")
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rate":%.1f,"errors":%d,"non_2xx":%d,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests,
    summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6),
    errors.connect + errors.read + errors.write + errors.timeout,
    errors.status,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000,
    latency.max / 1000))
end
