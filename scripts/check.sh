#!/usr/bin/env bash
# Every check, in the order a reviewer would run them: format, lint, the core/UI boundary, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets -- -D warnings

# The core never depends on the UI (../shared/STYLE.md).
if grep -rnE '\b(egui|eframe|rfd|egui_plot)::|^\s*use (egui|eframe|rfd|egui_plot)\b' \
    src/data src/model src/export src/backwork src/worker src/util.rs; then
  echo "error: the core (src/data, src/model, src/export, src/backwork, src/worker) must not use the UI crates" >&2
  exit 1
fi

RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

cargo test --release --all-targets
