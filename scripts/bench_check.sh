#!/usr/bin/env bash
# Benchmark `holdout challenge check` on a challenge whose test inputs are a ~1 GB CSV,
# against `pandas.read_csv` of that same file, in the same run.
#
# Generates (once, cached in $BENCH_DIR) a challenge data folder:
#   inputs/test.csv    ROWS rows, 12 columns: id, 6 numbers, 2 categories, a date, a
#                      free-text comment, an integer (~1 GB at the default 10 million rows)
#   inputs/train.csv   ROWS/100 training rows with the target
#   labels.csv         id,label for every test row (~100 MB)
#   sample/            1,000 public rows drawn apart from the test ids
# then times `holdout challenge check` (the whole folder: every file streamed, ids compared
# exactly, leakage, the split, train/test and sample/test duplicate rows, SHA-256 of every
# file) and `python3 -c 'pandas.read_csv(inputs/test.csv)'` (parsing that one file, nothing
# else), alternating, with /usr/bin/time -v; prints the median wall time and peak RSS of
# each and the ratios.
#
# Usage: scripts/bench_check.sh
#   HOLDOUT      the binary (default target/release/holdout; cargo build --release first)
#   BENCH_DIR    where the data lives (default /tmp/holdout-bench-check)
#   ROWS         test rows to generate (default 10000000, about 1 GB)
#   RUNS         runs of each side, alternating (default 3)
#   SCAN_INPUTS=1  also run the personal-data detectors over the 1 GB file
# Needs: python3 with numpy and pandas; GNU time (apt-get install time).
set -euo pipefail

HOLDOUT=${HOLDOUT:-target/release/holdout}
BENCH_DIR=${BENCH_DIR:-/tmp/holdout-bench-check}
ROWS=${ROWS:-10000000}
RUNS=${RUNS:-3}
SCAN_INPUTS=${SCAN_INPUTS:-0}
DATA="$BENCH_DIR/data-$ROWS"
TEST="$DATA/inputs/test.csv"

[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 1; }
mkdir -p "$BENCH_DIR"

if [ ! -s "$DATA/labels.csv" ]; then
  echo "generating $ROWS rows in $DATA (once; a few minutes) ..." >&2
  rm -rf "$DATA"
  python3 - "$ROWS" "$DATA" <<'PY'
import os, sys
import numpy as np
rows, data = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(11)
words = np.array("ok late fraud check refund online store gift card fuel travel food "
                 "night repeat new client review hold approved manual".split())
cats = np.array(["grocery", "fuel", "travel", "electronics", "fashion", "restaurants", "online", "pharmacy"])
cities = np.array(["Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Lille", "Rennes", "Brest", "Metz"])
def table(path, n, first_id, with_label, seed):
    r = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    y = r.integers(0, 2, n)
    with open(path, "w") as f:
        f.write("id,amount,x1,x2,x3,x4,x5,category,city,day,comment,count" + (",label" if with_label else "") + "\n")
        for s in range(0, n, 500_000):
            m = min(500_000, n - s)
            ids = np.arange(first_id + s, first_id + s + m)
            amount = np.round(r.lognormal(3.4, 1.0, m), 2)
            x = np.round(r.normal(0, 1, (m, 5)) + 0.3 * y[s:s + m, None], 5)
            cat = cats[r.integers(0, len(cats), m)]
            city = cities[r.integers(0, len(cities), m)]
            day = (np.datetime64("2024-01-01") + r.integers(0, 365, m)).astype(str)
            w = words[r.integers(0, len(words), (m, 2))]
            count = r.integers(0, 50, m)
            lab = y[s:s + m]
            lines = []
            for i in range(m):
                v = x[i]
                line = "%d,%.2f,%.5f,%.5f,%.5f,%.5f,%.5f,%s,%s,%s,%s %s,%d" % (
                    ids[i], amount[i], v[0], v[1], v[2], v[3], v[4], cat[i], city[i], day[i], w[i, 0], w[i, 1], count[i])
                lines.append(line + (",%d" % lab[i] if with_label else ""))
            f.write("\n".join(lines) + "\n")
    return y
y = table(os.path.join(data, "inputs", "test.csv"), rows, 10_000_000, False, 1)
with open(os.path.join(data, "labels.csv"), "w") as f:
    f.write("id,label\n")
    for s in range(0, rows, 1_000_000):
        ids = range(10_000_000 + s, 10_000_000 + min(rows, s + 1_000_000))
        f.write("\n".join("%d,%d" % (i, y[i - 10_000_000]) for i in ids) + "\n")
table(os.path.join(data, "inputs", "train.csv"), rows // 100, 1_000_000, True, 2)
sy = table(os.path.join(data, "sample", "inputs", "test.csv"), 1000, 100, False, 3)
with open(os.path.join(data, "sample", "labels.csv"), "w") as f:
    f.write("id,label\n" + "".join("%d,%d\n" % (100 + i, v) for i, v in enumerate(sy)))
PY
  chmod -R a+rX "$DATA"
fi
ls -l "$TEST" "$DATA/labels.csv" >&2
cat > "$BENCH_DIR/challenge.toml" <<EOF
id = "bench"
[scoring]
public_fraction = 0.5
split_seed = 1
[scoring.builtin]
metric = "accuracy"
target_column = "label"
[preparation]
scan_inputs = $([ "$SCAN_INPUTS" = 1 ] && echo true || echo false)
EOF

measure() { # name, command...; prints "wall-seconds kilobytes cpu-seconds"
  local name=$1; shift
  local log="$BENCH_DIR/$name.time"
  /usr/bin/time -v "$@" > "$BENCH_DIR/$name.out" 2> "$log" || [ "$name" = holdout ] || { cat "$log" >&2; exit 1; }
  grep -q "Exit status: [01]$" "$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$log")
  echo "$wall $rss $cpu"
}
run_holdout() { measure holdout "$HOLDOUT" challenge check "$DATA" --challenge "$BENCH_DIR/challenge.toml"; }
run_pandas() {
  measure pandas python3 -c 'import sys, pandas; d = pandas.read_csv(sys.argv[1]); print(d.shape)' "$TEST"
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

h_walls=(); h_rsss=(); h_cpus=(); p_walls=(); p_rsss=(); p_cpus=()
for ((run = 1; run <= RUNS; run++)); do
  read -r w r c < <(run_holdout); h_walls+=("$w"); h_rsss+=("$r"); h_cpus+=("$c")
  read -r w r c < <(run_pandas); p_walls+=("$w"); p_rsss+=("$r"); p_cpus+=("$c")
  echo "run $run: holdout ${h_walls[-1]} s ${h_rsss[-1]} KB ${h_cpus[-1]} cpu-s, pandas ${p_walls[-1]} s ${p_rsss[-1]} KB ${p_cpus[-1]} cpu-s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
h_wall=$(printf '%s\n' "${h_walls[@]}" | median); h_rss=$(printf '%s\n' "${h_rsss[@]}" | median)
p_wall=$(printf '%s\n' "${p_walls[@]}" | median); p_rss=$(printf '%s\n' "${p_rsss[@]}" | median)
h_cpu=$(printf '%s\n' "${h_cpus[@]}" | median); p_cpu=$(printf '%s\n' "${p_cpus[@]}" | median)

echo "holdout check: $(tail -n 1 "$BENCH_DIR/holdout.out")"
echo "pandas:        $(cat "$BENCH_DIR/pandas.out")"
awk -v RUNS="$RUNS" -v hw="$h_wall" -v hr="$h_rss" -v hc="$h_cpu" -v pw="$p_wall" -v pr="$p_rss" \
    -v pc="$p_cpu" -v bytes="$(stat -c %s "$TEST")" 'BEGIN {
  printf "test.csv: %.2f GB\n", bytes / 1e9
  printf "%-24s %10s %14s %14s\n", "median of " RUNS, "wall (s)", "peak RSS (MB)", "CPU (s)"
  printf "%-24s %10.2f %14.1f %14.2f\n", "holdout challenge check", hw, hr / 1024, hc
  printf "%-24s %10.2f %14.1f %14.2f\n", "pandas.read_csv", pw, pr / 1024, pc
  printf "faster: %.1fx   memory: %.1fx less\n", pw / hw, pr / hr
}'
