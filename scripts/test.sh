#!/usr/bin/env bash
# Runs every test suite of the project: the unit and integration tests of every crate (the store
# conformance suite on SQLite AND on PostgreSQL included), then the official Dolittle JavaScript
# SDK 17.0.1 conformance tests against a release build of dolittle-runtime.
#
# Needs: cargo (with cargo-nextest if available), node and npm, and a PostgreSQL server
# (127.0.0.1:5432, user postgres, trust auth; override with DOLITTLE_TEST_POSTGRES_URL). A local
# cluster that is installed but down is started. Nothing is skipped: a missing tool fails.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "error: $*" >&2
    exit 1
}
command -v cargo >/dev/null || fail "cargo is not installed (https://rustup.rs)"
command -v node >/dev/null || fail "node is not installed: the official-SDK conformance tests need Node.js 18 or newer"
command -v npm >/dev/null || fail "npm is not installed: the official-SDK conformance tests need it"

echo "==> PostgreSQL"
bash scripts/ensure-postgres.sh

# One feature set for every step, so that nothing is compiled twice: the SDK's in-process
# Runtime (its test and the event horizon example need it) is built with the workspace.
FEATURES=(--features dolittle-sdk/in-process)

echo "==> build (release)"
cargo build --release --locked --workspace --all-targets "${FEATURES[@]}"

echo "==> Rust tests (SQLite and PostgreSQL backends, Runtime over loopback, the SDK with an in-process Runtime)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --locked --workspace "${FEATURES[@]}" --no-fail-fast
else
    cargo test --release --locked --workspace "${FEATURES[@]}" --no-fail-fast
fi
echo "==> documentation examples (doctests)"
cargo test --release --locked --workspace "${FEATURES[@]}" --doc

echo "==> event horizon example: two microservices, each with its own in-process Runtime"
target/release/examples/event_horizon

echo "==> official JavaScript SDK 17.0.1 conformance"
(
    cd conformance/js-sdk-17
    npm ci --no-audit --no-fund --loglevel=error
    DOLITTLE_RUNTIME_BIN="$PWD/../../target/release/dolittle-runtime" npm test
)

echo "==> dashboard in headless Chromium"
bash tests/dashboard/run.sh
