#!/usr/bin/env bash
# Issue 14's side-by-side: backwork's network core and PyTorch on this CPU, in one run, with
# the ratios (backwork ÷ PyTorch for rates, PyTorch ÷ backwork for times; above 1 is faster).
# This machine's speed drifts by 20-30% from minute to minute, so training and inference are
# measured in three interleaved rounds and each side keeps its best.
#
#     scripts/core_bench.sh    # needs a release build and `pip install torch safetensors numpy`
#
# Prints every JSON line and a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BACKWORK:-target/release/backwork}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
tr=(); ev=(); ptr=(); pev=()
for round in 1 2 3; do
  t=$("$bin" bench train --steps 55); echo "$t"; tr+=("$(field "$t" steady_images_per_s)")
  e=$("$bin" bench eval); echo "$e"; ev+=("$(field "$e" images_per_s)")
  p=$(python3 scripts/pytorch_core_bench.py --steps 50); echo "$p"
  ptr+=("$(field "$p" train_images_per_s)"); pev+=("$(field "$p" eval_images_per_s)")
done
bw=$("$bin" bench backwork --steps 10); echo "$bw"
ptb=$(python3 scripts/pytorch_backwork_bench.py --steps 10); echo "$ptb"
python3 - "$(best "${tr[@]}")" "$(best "${ptr[@]}")" "$(best "${ev[@]}")" "$(best "${pev[@]}")" \
  "$(field "$bw" cache_s)" "$(field "$ptb" cache_s)" "$(field "$bw" step_ms_10x8)" \
  "$(field "$ptb" step_ms_10x8)" <<'PY'
import sys
v = [float(a) for a in sys.argv[1:]]
rows = [
    ("training, batch 64, Adam (images/s, best of 3)", v[0], v[1], True),
    ("inference, 10,000 test images (images/s, best of 3)", v[2], v[3], True),
    ("ten reference sets, 60,000 images (s)", v[4], v[5], False),
    ("one step of the 10 x 8 figure (ms)", v[6], v[7], False),
]
print("| | backwork | PyTorch | ratio |")
print("|---|---|---|---|")
for name, b, p, rate in rows:
    print(f"| {name} | {b:,.1f} | {p:,.1f} | {p / b if not rate else b / p:.2f}x |")
PY
