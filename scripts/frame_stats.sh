#!/usr/bin/env bash
# Measures the window's frame times during the default 10 x 8 run (issue 4's responsiveness
# goal): opens `backwork --autostart --frame-stats` under Xvfb (Mesa llvmpipe, glow), copies the
# statistics file every second, and prints one line per second and a summary at the end.
# Usage: scripts/frame_stats.sh [SECONDS] [BINARY]   (defaults: 40, target/release/backwork)
set -euo pipefail
secs="${1:-40}"
bin="${2:-${CARGO_TARGET_DIR:-target}/release/backwork}"
dir=$(mktemp -d)
display=":$((90 + RANDOM % 9))"
Xvfb "$display" -screen 0 1280x860x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 1
# The window's persisted state (panel sizes, settings) would change what is drawn.
rm -rf "${XDG_DATA_HOME:-$HOME/.local/share}/backwork"
DISPLAY="$display" LIBGL_ALWAYS_SOFTWARE=1 "$bin" --autostart --frame-stats "$dir/fs.json" \
  >"$dir/app.log" 2>&1 &
app=$!
for _ in $(seq "$secs"); do
  sleep 1
  [ -f "$dir/fs.json" ] && { cat "$dir/fs.json"; echo; } >>"$dir/series.jsonl"
done
python3 - "$dir/series.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seen, uniq = set(), []
for r in rows:
    key = (r["frames"], r["p99_ms"])
    if key not in seen:
        seen.add(key); uniq.append(r)
for r in uniq:
    print(f'frames {r["frames"]:5d}  p50 {r["p50_ms"]:6.1f}  p99 {r["p99_ms"]:6.1f}  '
          f'steps/s {r["engine_steps_per_s"]:5.2f}  run {r.get("run_steps")} / {r.get("run_seconds")}')
run = [r for r in uniq if r["engine_steps_per_s"] > 0]
if run:
    p99 = sorted(r["p99_ms"] for r in run)
    over = sum(1 for v in p99 if v > 33)
    print(f"during the run: {len(run)} windows, worst p99 {p99[-1]:.1f} ms, median p99 "
          f"{p99[len(p99)//2]:.1f} ms, windows over 33 ms: {over}")
PY
