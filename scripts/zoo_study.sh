#!/usr/bin/env bash
# The convergence study of issue 11 (README, "Convergence on the networks people bring"):
# trains the zoo (scripts/pytorch_zoo.py, PyTorch on the CPU) and runs one `backwork sweep`
# over it: every network, both presets, three seeds, the 10 x 8 figure, 1,500 steps; then the
# default preset at the paper's bar 0.9999. Prints the README's table.
#
#   scripts/zoo_study.sh [ZOO_DIR] [SWEEP_DIR]      (several hours on 2 cores, most of it the
#                                                    original preset's 1,500-step runs)
# Shard it across machines with SHARD=I/N (then `backwork sweep --merge` the folders).
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${1:-zoo}
OUT=${2:-zoo-sweep}
SHARD=${SHARD:-1/1}
mkdir -p "$ZOO" "$OUT"
if [ ! -f "$ZOO/zoo.json" ]; then
  python3 scripts/pytorch_zoo.py --out "$ZOO"
fi
cargo build --release --bins
B=target/release/backwork
# A network trained by backwork itself from PyTorch's init, beside the shipped one (which is
# `backwork train` with the TensorFlow init, 5 epochs).
if [ ! -f "$ZOO/backwork-uniform-1ep.safetensors" ]; then
  $B train --init uniform --epochs 1 --seed 3 --out "$ZOO/backwork-uniform-1ep.safetensors"
fi
MODELS="shipped,$ZOO/backwork-uniform-1ep.safetensors"
for f in "$ZOO"/*.safetensors; do
  case "$f" in *backwork-uniform-1ep*) ;; *) MODELS="$MODELS,$f" ;; esac
done
$B sweep --models "$MODELS" --preset original,robust --seeds 0,1,2 --labels all \
  --max-steps 1500 --shard "$SHARD" --out "$OUT/at-0.999"
$B sweep --models "$MODELS" --preset robust --threshold 0.9999 --seeds 0,1,2 --labels all \
  --max-steps 1500 --shard "$SHARD" --out "$OUT/at-0.9999"
python3 scripts/sweep_table.py "$OUT/at-0.999" "$OUT/at-0.9999" --zoo "$ZOO/zoo.json"
