-- wrk script for the Tandem benchmark: POST one file's bytes on every request.
--
-- bench/run.py sets, per run:
--   BENCH_BODY_FILE     path of the request body (a CSV payload or the 1 MiB echo body)
--   BENCH_CONTENT_TYPE  its Content-Type (text/csv, application/octet-stream)
-- The "Connection: close" header of the non-keep-alive runs is passed with wrk's -H.
--
-- done() prints one machine-readable line, "BENCH_RESULT {json}", after wrk's own report, so the
-- harness reads exact counts and percentiles instead of parsing wrk's rounded text.

local path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "text/csv"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
      '"errors_timeout":%d,"latency_p50_us":%d,"latency_p90_us":%d,"latency_p99_us":%d,' ..
      '"latency_max_us":%d,"latency_mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0),
      latency.max, latency.mean))
end
