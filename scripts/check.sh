#!/usr/bin/env bash
# Every check, in the order a reviewer would run them: format, lint, the core/UI boundary, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets -- -D warnings

# The core never depends on the UI (../shared/STYLE.md): every file outside src/app and the
# binary's entry point.
core=$(find src -name '*.rs' -not -path 'src/app/*' -not -path 'src/main.rs')
if grep -nE '\b(egui|eframe|rfd|egui_plot)::|^\s*use (egui|eframe|rfd|egui_plot)\b' $core; then
  echo "error: the core (everything but src/app) must not use the UI crates" >&2
  exit 1
fi

# The window only draws: it holds no network and runs no numeric code of its own. Networks,
# engines and reference sets stay behind the worker (src/worker), which hands the app plain
# records (crate::meta) and handles.
if grep -rnE '\bcandle(_core|_nn)?::|^\s*use candle|crate::model\b|\b(FrozenCnn|Engine|LabelRefs|RefCache|Cnn)\b' \
    src/app | grep -vE '^[^:]+:[0-9]+:\s*//'; then
  echo "error: src/app must not use candle, crate::model or the engine's numeric types; go through src/worker" >&2
  exit 1
fi

RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

cargo test --release --all-targets
