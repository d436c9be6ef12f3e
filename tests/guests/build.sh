#!/usr/bin/env bash
# Build every test guest as a wasm32-wasip2 component and copy it to dist/NAME.wasm.
# Needs the target once: `rustup target add wasm32-wasip2`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2 "$@"
mkdir -p dist
for crate in */Cargo.toml; do
    name="$(dirname "$crate")"
    artifact="target/wasm32-wasip2/release/airlock_test_guest_${name//-/_}.wasm"
    cp "$artifact" "dist/${name}.wasm"
    echo "built dist/${name}.wasm ($(wc -c < "dist/${name}.wasm") bytes)"
done
