#!/usr/bin/env bash
# The retraining experiment of the README: fooling images found against the shipped model
# (the 10 x 8 figure, 300 steps, seed 0) are added to the training set in each mode, for two
# rounds, and every model is measured by the same 300-step backwork run.
# Usage: scripts/retrain_study.sh OUT_DIR   (about 40 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/retrain_study.sh OUT_DIR}
mkdir -p "$out"
bin=target/release/backwork
cargo build --release --quiet
$bin run --labels all --max-steps 300 --seed 0 --out "$out/fooling"
for mode in uniform extra-class; do
  mkdir -p "$out/$mode"
  $bin retrain --from "$out/fooling" --mode "$mode" --rounds 2 --repeat 10 --budget 300 \
    --out "$out/$mode/model.safetensors"
done
