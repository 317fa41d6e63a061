# The load graphs of `bash scripts/bench.sh --sweep`, from the samples it
# wrote to `dir` (sweep.dat: one line per workload and connection count;
# ingest.dat: one line a second of the 1M-record Kafka run).
#   gnuplot -e "dir='docs/bench'" scripts/bench/plot.gp
if (!exists("dir")) dir = "docs/bench"
set terminal pngcairo size 900,600 font "DejaVu Sans,11" noenhanced
set key top left box opaque
set grid
set datafile columnheaders

workloads = "webhook cache_hit cache_miss"
title_of(w) = w eq "webhook" ? "webhook POST (one event each)" : \
              w eq "cache_hit" ? "GET stock, cache hit" : "GET stock, cache miss"

set output dir."/throughput.png"
set title "Throughput against offered load (2 cores: service, PostgreSQL, Redis and wrk together)"
set xlabel "concurrent connections"
set ylabel "requests/s"
set logscale x 2
set yrange [0:*]
plot for [i=1:3] dir."/sweep.dat" using (strcol(1) eq word(workloads, i) ? $2 : NaN):3 \
     with linespoints lw 2 pt 7 lc i title title_of(word(workloads, i))

set output dir."/latency.png"
set terminal pngcairo size 1200,600 font "DejaVu Sans,11" noenhanced
set key outside right top vertical box
set title "Latency against throughput: each point one connection count (1 to 256)"
set xlabel "requests/s"
set ylabel "latency, ms (log scale)"
unset logscale x
set logscale y 10
set xrange [0:*]
set yrange [*:*]
plot for [i=1:3] dir."/sweep.dat" using (strcol(1) eq word(workloads, i) ? $3 : NaN):5 \
       with linespoints lw 2 pt 7 lc i title title_of(word(workloads, i))." p99", \
     for [i=1:3] dir."/sweep.dat" using (strcol(1) eq word(workloads, i) ? $3 : NaN):4 \
       with linespoints lw 1 dt 2 pt 6 lc i title title_of(word(workloads, i))." p50"

set output dir."/ingest.png"
set terminal pngcairo size 900,600 font "DejaVu Sans,11" noenhanced
set key inside top right vertical maxcols 1 box
set title "Kafka ingest of 1M records: rate and consumer lag, one sample a second"
set xlabel "seconds since the service started"
set ylabel "events applied per second"
set y2label "consumer lag (records)"
unset logscale y
set xrange [0:*]
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set key top right
# The rate between two samples: applied events over elapsed time.
prev_t = 0; prev_n = 0
rate(t, n) = (r = (t > prev_t) ? (n - prev_n) / (t - prev_t) : NaN, prev_t = t, prev_n = n, r)
plot dir."/ingest.dat" using 1:(rate($1, $2)) axes x1y1 with lines lw 2 title "events applied/s", \
     dir."/ingest.dat" using 1:3 axes x1y2 with lines lw 2 dt 2 title "consumer lag"
