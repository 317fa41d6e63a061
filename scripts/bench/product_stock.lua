-- wrk script: a product across warehouses (first page) for products drawn
-- at random from the file named by BENCH_PRODUCTS (one product_id a line).
local paths = {}
function init(args)
  for line in io.lines(os.getenv("BENCH_PRODUCTS")) do
    paths[#paths + 1] = "/api/v1/products/" .. line .. "/stock"
  end
  math.randomseed(os.time() + #paths)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
