#!/usr/bin/env bash
# Benchmark `holdout score` against pandas + scikit-learn on the same 10-million-row files.
#
# Generates (once, cached in $BENCH_DIR) labels.csv (id,label; binary; ~100 MB) and
# predictions.csv (id,prob; ~170 MB), then runs both scorers in this run with
# /usr/bin/time -v and prints wall time, peak RSS and the ratios. Goal: holdout >= 10x faster
# and >= 4x less peak memory.
#
# Usage: scripts/bench_scoring.sh
#   HOLDOUT_SCORE   command that scores (default: "target/release/holdout score"; build first
#                   with cargo build --release)
#   BENCH_DIR       where the data lives (default /tmp/holdout-bench)
#   ROWS            rows to generate (default 10000000)
#   SHUFFLE=1       write predictions in a shuffled order (exercises the hash join)
#   RUNS            runs of each side, alternating (default 3); the median wall time and the
#                   median peak RSS are reported, since other work on the machine adds noise
# Needs: python3 with numpy, pandas, scikit-learn; GNU time (apt-get install time).
set -euo pipefail

HOLDOUT_SCORE=${HOLDOUT_SCORE:-target/release/holdout score}
BENCH_DIR=${BENCH_DIR:-/tmp/holdout-bench}
ROWS=${ROWS:-10000000}
SHUFFLE=${SHUFFLE:-0}
RUNS=${RUNS:-3}
LABELS="$BENCH_DIR/labels-$ROWS.csv"
PREDICTIONS="$BENCH_DIR/predictions-$ROWS-shuffle$SHUFFLE.csv"

[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 1; }
mkdir -p "$BENCH_DIR"

if [ ! -s "$LABELS" ] || [ ! -s "$PREDICTIONS" ]; then
  echo "generating $ROWS rows in $BENCH_DIR ..." >&2
  python3 - "$ROWS" "$LABELS" "$PREDICTIONS" "$SHUFFLE" <<'PY'
import sys
import numpy as np
rows, labels, predictions, shuffle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
rng = np.random.default_rng(7)
y = rng.integers(0, 2, rows)
p = np.clip(0.35 * y + rng.normal(0.33, 0.25, rows), 0, 1)
ids = np.arange(rows)
def write(path, first, second, fmt, order):
    with open(path, "w") as f:
        f.write(first + "\n")
        for start in range(0, rows, 1_000_000):
            chunk = order[start:start + 1_000_000]
            f.write("\n".join(fmt % (i, v) for i, v in zip(ids[chunk].tolist(), second[chunk].tolist())))
            f.write("\n")
write(labels, "id,label", y, "%d,%d", np.arange(rows))
order = rng.permutation(rows) if shuffle else np.arange(rows)
write(predictions, "id,prob", p, "%d,%.7f", order)
PY
fi
ls -l "$LABELS" "$PREDICTIONS" >&2

measure() { # name, command...; prints "seconds kilobytes"
  local name=$1; shift
  local log="$BENCH_DIR/$name.time"
  /usr/bin/time -v "$@" > "$BENCH_DIR/$name.out" 2> "$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  echo "$wall $rss"
}

run_holdout() {
  # shellcheck disable=SC2086 # HOLDOUT_SCORE is a command with arguments
  measure holdout $HOLDOUT_SCORE --labels "$LABELS" --predictions "$PREDICTIONS" \
    --id-column id --target-column label --prediction-column prob --positive-label 1 \
    --metric accuracy --metric roc_auc --metric log_loss --threshold 0.5 --json
}
run_pandas() {
  measure pandas python3 -c '
import sys, pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score, log_loss
labels = pd.read_csv(sys.argv[1]); preds = pd.read_csv(sys.argv[2])
d = labels.merge(preds, on="id", how="inner", validate="one_to_one")
p = d["prob"].clip(1e-15, 1 - 1e-15)
print({"accuracy": accuracy_score(d["label"], (d["prob"] >= 0.5).astype(int)),
       "roc_auc": roc_auc_score(d["label"], d["prob"]),
       "log_loss": log_loss(d["label"], p)})
' "$LABELS" "$PREDICTIONS"
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

h_walls=(); h_rsss=(); p_walls=(); p_rsss=()
for ((run = 1; run <= RUNS; run++)); do
  read -r w r < <(run_holdout); h_walls+=("$w"); h_rsss+=("$r")
  read -r w r < <(run_pandas); p_walls+=("$w"); p_rsss+=("$r")
  echo "run $run: holdout ${h_walls[-1]} s ${h_rsss[-1]} KB, pandas ${p_walls[-1]} s ${p_rsss[-1]} KB, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
h_wall=$(printf '%s\n' "${h_walls[@]}" | median); h_rss=$(printf '%s\n' "${h_rsss[@]}" | median)
p_wall=$(printf '%s\n' "${p_walls[@]}" | median); p_rss=$(printf '%s\n' "${p_rsss[@]}" | median)

echo "holdout:        $(cat "$BENCH_DIR/holdout.out")"
echo "pandas+sklearn: $(cat "$BENCH_DIR/pandas.out")"
awk -v RUNS="$RUNS" -v hw="$h_wall" -v hr="$h_rss" -v pw="$p_wall" -v pr="$p_rss" 'BEGIN {
  printf "%-15s %10s %14s\n", "median of " RUNS, "wall (s)", "peak RSS (MB)"
  printf "%-15s %10.2f %14.1f\n", "holdout", hw, hr / 1024
  printf "%-15s %10.2f %14.1f\n", "pandas+sklearn", pw, pr / 1024
  printf "speed-up: %.1fx   memory: %.1fx less\n", pw / hw, pr / hr
}'
