-- wrk script of bench/http.sh. With TOKENS_FILE set, every request carries
-- the next of its tokens (one a line) as a bearer token, each thread
-- starting at its own offset; without it, the request is wrk's own (-H
-- headers). At the end it prints one machine-readable line:
--   RESULT <requests/s> <p50 µs> <p99 µs> <non-2xx/3xx responses> <socket errors>

local tokens = {}
local n, i = 0, 0
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local file = os.getenv("TOKENS_FILE")
  if file == nil or file == "" then
    return
  end
  for line in io.lines(file) do
    if line ~= "" then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
  i = ((id or 1) * 7919) % n
end

function request()
  if n == 0 then
    return wrk.request()
  end
  i = i % n + 1
  return wrk.format(nil, nil, { Authorization = tokens[i] })
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
