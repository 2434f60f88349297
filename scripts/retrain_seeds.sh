#!/usr/bin/env bash
# The retraining study of the README with several seeds per arm (issue 14 §4): for each seed,
# the fooling images of a 300-step default run against the shipped model (that seed), then the
# three arms of scripts/retrain_study.sh with that seed for training and measuring: uniform soft
# labels (1 round), an 11th class (2 rounds), and the control (the same fine-tuning without
# fooling images). Each arm's report.json lands in OUT/seed-S/ARM/; a seed already done is
# skipped, so a stopped study resumes. scripts/retrain_summary.py OUT prints mean and 95%
# interval per arm.
# Usage: scripts/retrain_seeds.sh OUT_DIR [SEED ...]   (seeds 0-4 by default; about 12 minutes
# a seed on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/retrain_seeds.sh OUT_DIR [SEED ...]}
shift
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2 3 4)
bin=target/release/backwork
cargo build --release --quiet
for seed in "${seeds[@]}"; do
  dir="$out/seed-$seed"
  [ -f "$dir/control/report.json" ] && continue
  rm -rf "$dir"; mkdir -p "$dir"
  $bin run --labels all --max-steps 300 --seed "$seed" --out "$dir/fooling" > /dev/null
  for run in uniform:1:10 extra-class:2:10 control:1:0; do
    IFS=: read -r arm rounds repeat <<< "$run"
    mode=$arm; [ "$arm" = control ] && mode=uniform
    mkdir -p "$dir/$arm"
    $bin retrain --from "$dir/fooling" --mode "$mode" --rounds "$rounds" --repeat "$repeat" \
      --budget 300 --seed "$seed" --out "$dir/$arm/model.safetensors" > /dev/null
  done
  echo "seed $seed done"
done
