-- wrk script: GET stock for pairs drawn at random from the file named by
-- BENCH_PAIRS (one "warehouse_id/product_id" a line).
local paths = {}
function init(args)
  for line in io.lines(os.getenv("BENCH_PAIRS")) do
    paths[#paths + 1] = "/api/v1/warehouse/" .. line:gsub("/", "/products/", 1)
  end
  math.randomseed(os.time() + #paths)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
