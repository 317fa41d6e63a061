-- wrk script: unique single-event webhook POSTs (arrivals of 1 unit over
-- 1,000 products of one warehouse), so every request applies once.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
local warehouse = os.getenv("BENCH_WAREHOUSE") or "7b1f6c2e-0000-4000-8000-000000000001"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  n = n + 1
  local movement = string.format("%08x-%04x-4000-8000-%012x", math.floor(os.time() % 4294967296), tid, n)
  local product = string.format("00000000-0000-4000-8000-%012x", n % 1000)
  local body = '{"id":"' .. movement .. '","source":"bench","specversion":"1.0",'
    .. '"type":"ru.retail.warehouses.movement","time":1737439421623,'
    .. '"data":{"movement_id":"' .. movement .. '","warehouse_id":"' .. warehouse .. '",'
    .. '"product_id":"' .. product .. '","timestamp":"2025-02-18T12:12:56Z",'
    .. '"event":"arrival","quantity":1}}'
  return wrk.format(nil, "/api/v1/kafka/webhook", nil, body)
end
