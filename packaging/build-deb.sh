#!/usr/bin/env bash
# Build the skewd Debian package: target/debian/skewd_<version>-1_<arch>.deb.
# Installs cargo-deb (pinned) into ~/.cargo/bin when it is missing, builds the
# release binary, generates the man pages, completions and packaged units
# into target/deb-assets, then has cargo-deb pack them without building.
# Prints the .deb's path as its last line. It never installs the package.
set -euo pipefail
trap 'echo "build-deb.sh: FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
target_dir=${CARGO_TARGET_DIR:-target}
assets=target/deb-assets   # relative to the crate: Cargo.toml's assets name it so

if ! cargo deb --version 2>/dev/null | grep -F "$CARGO_DEB_VERSION" >/dev/null; then
  echo "build-deb.sh: installing cargo-deb $CARGO_DEB_VERSION (once; it stays in ~/.cargo/bin)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

cargo build --release --bin skewd
bin="$target_dir/release/skewd"

rm -rf "$assets"
mkdir -p "$assets/man" "$assets/systemd"
"$bin" generate-assets "$assets" >/dev/null
mv "$assets"/*.1 "$assets/man/"
# -n: no name or timestamp in the header, so equal pages give equal bytes.
gzip -9n "$assets"/man/*.1

# The units as packaged: the repository's, with the binary at /usr/bin/skewd
# (the repository's units name /usr/local/bin/skewd, where the manual
# install puts it) and a header saying so.
for unit in systemd/*; do
  out="$assets/systemd/$(basename "$unit")"
  {
    echo "# From the skewd package: the binary is /usr/bin/skewd, and the package"
    echo "# installs this unit neither enabled nor started (README: Install from a"
    echo "# .deb). Notes below about /usr/local/bin are for a build from source."
    sed -E 's#^ExecStart=/usr/local/bin/skewd( |$)#ExecStart=/usr/bin/skewd\1#' "$unit"
  } >"$out"
  if grep '^ExecStart=' "$out" | grep -Ev '^ExecStart=/usr/bin/skewd( |$)' >/dev/null; then
    echo "build-deb.sh: $unit: an ExecStart= is not /usr/local/bin/skewd; update this script" >&2
    exit 1
  fi
done

# cargo-deb strips the binary (its symbols; the release profile already
# drops the debug info).
if ! cargo deb --no-build >"$assets/cargo-deb.log" 2>&1; then
  cat "$assets/cargo-deb.log" >&2
  exit 1
fi
grep -i warning "$assets/cargo-deb.log" >&2 || true
tail -n 1 "$assets/cargo-deb.log"
