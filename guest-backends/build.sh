#!/usr/bin/env bash
# Builds the guest backends as WebAssembly components and checks what they import.
#
#   guest-backends/build.sh            every backend crate (a member with a cdylib [lib])
#   guest-backends/build.sh NAME...    only those (e.g. hashicorp-vault)
#
# Each component lands in guest-backends/dist/NAME.wasm (gitignored). Then
# `guest-inspect --check` prints every component's imports and exports and fails the build
# if one imports anything beyond airlock:backend/* and the wasi:io / wasi:cli interfaces a
# Rust std guest declares (no wasi:http, sockets, filesystem, clocks or random), or does not
# export airlock:backend/backend. The SDK's minimal example is built and checked too, so the
# export glue is exercised even when no backend changed.
set -euo pipefail
cd "$(dirname "$0")"

TARGET=wasm32-wasip2
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

if [ "$#" -gt 0 ]; then
    names=("$@")
else
    names=()
    for manifest in */Cargo.toml; do
        # A backend is a crate whose [lib] is a cdylib (the SDK's cdylib is only an example).
        if awk '/^\[lib\]/{lib=1; next} /^\[/{lib=0} lib && /crate-type/ && /cdylib/{found=1} END{exit !found}' "$manifest"; then
            names+=("$(dirname "$manifest")")
        fi
    done
fi
if [ "${#names[@]}" -eq 0 ]; then
    echo "build.sh: no backend crates found" >&2
    exit 1
fi

pkgs=()
for n in "${names[@]}"; do pkgs+=(-p "$n"); done
cargo build --release --target "$TARGET" "${pkgs[@]}"
cargo build --release --target "$TARGET" -p airlock-guest --example minimal

mkdir -p dist
for n in "${names[@]}"; do
    cp "target/$TARGET/release/${n//-/_}.wasm" "dist/$n.wasm"
done

files=()
for n in "${names[@]}"; do files+=("dist/$n.wasm"); done
files+=("target/$TARGET/release/examples/minimal.wasm")
cargo run --quiet --release -p guest-inspect -- --check "${files[@]}"
echo "build.sh: ${#names[@]} component(s) in $(pwd)/dist"
