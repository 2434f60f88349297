#!/usr/bin/env bash
# The retraining experiment of the README: fooling images found against the shipped model
# (the 10 x 8 figure, 300 steps, seed 0) are added to the training set, each 10 times per
# epoch: one round with uniform soft labels (the original did one), two rounds with an 11th
# class (Nguyen et al. iterate); and the control: the same one-epoch fine-tuning without them
# (--repeat 0). Every model is measured by the same 300-step backwork run.
# Usage: scripts/retrain_study.sh OUT_DIR   (about 40 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/retrain_study.sh OUT_DIR}
mkdir -p "$out"
bin=target/release/backwork
cargo build --release --quiet
$bin run --labels all --max-steps 300 --seed 0 --out "$out/fooling"
for run in uniform:1 extra-class:2; do
  mode=${run%%:*}; rounds=${run#*:}
  mkdir -p "$out/$mode"
  $bin retrain --from "$out/fooling" --mode "$mode" --rounds "$rounds" --repeat 10 --budget 300 \
    --out "$out/$mode/model.safetensors"
done
mkdir -p "$out/control"
$bin retrain --from "$out/fooling" --mode uniform --rounds 1 --repeat 0 --budget 300 \
  --out "$out/control/model.safetensors"
