#!/usr/bin/env bash
# The stall study of the engine issue: each digit alone (8 images, seed 0, at most 1,500 steps)
# under the original rule with clipped pixels, with the stall rule (perturb, and reinit), and
# with unclipped pixels as the original. Prints one line per run; results in $OUT (default
# /tmp/backwork-stall-study). THRESHOLD=0.9999 runs the same at the paper's bar.
set -euo pipefail
BIN=${BIN:-target/release/backwork}
OUT=${OUT:-/tmp/backwork-stall-study}
mkdir -p "$OUT"
THRESHOLD_FLAG=${THRESHOLD:+--threshold=$THRESHOLD}
# The stall rule as the engine issue measured it: window 100 probes, noise ±0.1.
configs=${CONFIGS:-"original:--pixels=clip perturb:--stall=perturb,--stall-window=100,--stall-noise=0.1 reinit:--stall=reinit,--stall-window=100 none:--pixels=none"}
for cfg in $configs; do
  name=${cfg%%:*}; flags=${cfg#*:}
  for d in 0 1 2 3 4 5 6 7 8 9; do
    dir="$OUT/$name-$d"
    rm -rf "$dir"
    "$BIN" run --preset original --labels "$d" ${flags//,/ } $THRESHOLD_FLAG --out "$dir" >/dev/null 2>&1 || true
    python3 - "$dir/results.json" "$name" "$d" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
imgs = r["images"]
ps = [i["p_label"] for i in imgs]
png = [i["p_label_png"] for i in imgs]
print(f'{sys.argv[2]:8} digit {sys.argv[3]}: {r["end_reason"]:18} steps {r["steps"]:5}  reached {sum(i["reached_threshold"] for i in imgs)}/8  '
      f'min p {min(ps):.5f}  min p(png) {min(png):.5f}  reinits {sum(i["reinits"] for i in imgs)}')
PY
  done
done
