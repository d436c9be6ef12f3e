# airlock — the README's commands. `make setup` once on a fresh machine, then `make run`
# or `make test`.

CARGO ?= cargo
PYTHON ?= python3

.PHONY: setup run test lint fmt bench build

## setup: install everything a fresh machine needs (Rust wasm target, Python packages) and build.
setup:
	rustup target add wasm32-wasip2
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(CARGO) build --workspace --all-targets

build:
	$(CARGO) build --workspace

## run: the credential service on the embedded default: Fernet in ./data/ (created on
## first use), listening on http://127.0.0.1:8900. Prints the admin token on first start.
run:
	$(CARGO) run --quiet -p airlock -- serve

## test: every test; tools the tests need must be present (no silent skips).
test:
	AIRLOCK_REQUIRE_TOOLS=1 $(CARGO) test --workspace

## bench: load benchmark of the service on loopback (release build; about a minute).
bench:
	$(CARGO) bench -p airlock --bench service_load

## lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
