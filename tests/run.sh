#!/usr/bin/env bash
# Every test of skewd: lints, unit and simulation tests, integration tests
# against real peers (chronyd on loopback), promtool and systemd checks.
# Installs the Debian packages the tests need when they are missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chronyd >/dev/null 2>&1 || need+=(chrony)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkgconf)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v go >/dev/null 2>&1 || need+=(golang-go)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' postinst scripts would start their daemons; a chronyd
    # started that way (without -x) would discipline the system clock. Deny
    # every service start for the duration of the install.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      added_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "tests/run.sh: missing ${need[*]} and cannot install them (not root or no apt-get)" >&2
    exit 1
  fi
fi
# The tests never stop, start or reconfigure a service of the host: a
# chronyd or Prometheus already running keeps running; the tests use their
# own loopback addresses and ports beside it.

export SKEWD_REQUIRE_PEERS=1
export CARGO_TERM_COLOR=never

echo "== cargo fmt --all --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings (default features, then all)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings
echo "== the client alone: cargo clippy/test --no-default-features"
cargo clippy --no-default-features --lib -- -D warnings
cargo test --no-default-features --features tokio --lib -- --test-threads=2
cargo test --no-default-features --doc -- --test-threads=2
echo "== the C ABI (clients/c): clippy, its unit tests (the header in sync), the libraries"
cargo clippy -p skewd-c --all-targets -- -D warnings
cargo test -p skewd-c -- --test-threads=2
cargo build --release --workspace
echo "== cargo test --all-features (the simulator and test hooks included)"
cargo test --all-features -- --test-threads=2
echo "== the Debian package: packaging/build-deb.sh, then packaging/check-deb.sh (unpacked, never installed)"
packaging/check-deb.sh
