-- wrk script: bulk lookups of BENCH_BULK (default 100) pairs drawn at random
-- from the file named by BENCH_PAIRS (one "warehouse_id/product_id" a line).
local pairs_ = {}
local size = tonumber(os.getenv("BENCH_BULK") or "100")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  for line in io.lines(os.getenv("BENCH_PAIRS")) do
    local w, p = line:match("([^/]+)/([^/]+)")
    pairs_[#pairs_ + 1] = '{"warehouse_id":"' .. w .. '","product_id":"' .. p .. '"}'
  end
  math.randomseed(os.time() + #pairs_)
end

function request()
  local items = {}
  for i = 1, size do
    items[i] = pairs_[math.random(#pairs_)]
  end
  return wrk.format(nil, "/api/v1/stock/lookup", nil, '{"items":[' .. table.concat(items, ",") .. ']}')
end
