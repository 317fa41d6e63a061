-- wrk script: GETs of paths built from lines drawn at random from the file
-- named by BENCH_LINES: BENCH_PREFIX, the line with its first "/" replaced
-- by BENCH_JOIN, then BENCH_SUFFIX. With lines "warehouse_id/product_id",
-- prefix "/api/v1/warehouse/" and join "/products/", that is GET stock.
local paths = {}
function init(args)
  local prefix = os.getenv("BENCH_PREFIX") or ""
  local join = os.getenv("BENCH_JOIN") or "/"
  local suffix = os.getenv("BENCH_SUFFIX") or ""
  for line in io.lines(os.getenv("BENCH_LINES")) do
    paths[#paths + 1] = prefix .. line:gsub("/", join, 1) .. suffix
  end
  math.randomseed(os.time() + #paths)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
