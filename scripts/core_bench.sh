#!/usr/bin/env bash
# Issue 14's side-by-side: backwork's network core and PyTorch on this CPU, in one run, with
# the ratios (backwork ÷ PyTorch for rates, PyTorch ÷ backwork for times; above 1 is faster).
#
#     scripts/core_bench.sh            # needs a release build and `pip install torch safetensors numpy`
#
# Prints the four JSON lines and a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BACKWORK:-target/release/backwork}
train=$("$bin" bench train --steps 55)
eval=$("$bin" bench eval)
bw=$("$bin" bench backwork --steps 10)
pt=$(python3 scripts/pytorch_core_bench.py --steps 50)
ptb=$(python3 scripts/pytorch_backwork_bench.py --steps 10)
printf '%s\n' "$train" "$eval" "$bw" "$pt" "$ptb"
python3 - "$train" "$eval" "$bw" "$pt" "$ptb" <<'PY'
import json, sys
tr, ev, bw, pt, ptb = (json.loads(a) for a in sys.argv[1:])
rows = [
    ("training, batch 64, Adam (images/s)", tr["steady_images_per_s"], pt["train_images_per_s"], True),
    ("inference, 10,000 test images (images/s)", ev["images_per_s"], pt["eval_images_per_s"], True),
    ("ten reference sets, 60,000 images (s)", bw["cache_s"], ptb["cache_s"], False),
    ("one step of the 10 x 8 figure (ms)", bw["step_ms_10x8"], ptb["step_ms_10x8"], False),
]
print(f"| | backwork | {pt['impl']} | ratio |")
print("|---|---|---|---|")
for name, b, p, rate in rows:
    ratio = b / p if rate else p / b
    print(f"| {name} | {b:,.1f} | {p:,.1f} | {ratio:.2f}x |")
PY
