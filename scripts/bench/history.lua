-- wrk script: the first history page (100 entries) of pairs drawn at random
-- from the file named by BENCH_PAIRS (one "warehouse_id/product_id" a line).
local paths = {}
function init(args)
  for line in io.lines(os.getenv("BENCH_PAIRS")) do
    paths[#paths + 1] = "/api/v1/warehouses/" .. line:gsub("/", "/products/", 1) .. "/history?limit=100"
  end
  math.randomseed(os.time() + #paths)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
