#!/usr/bin/env bash
# Check the skewd Debian package without installing it: unpack it with
# dpkg-deb -x/-e into a temporary directory and check its control data, that
# it holds exactly the expected files, that its binary runs and accepts its
# default config, that systemd-analyze verifies its units, its man pages and
# its bash completion.
#
#   packaging/check-deb.sh [DEB]   # default: build it with packaging/build-deb.sh
#
# Without dpkg-deb it skips, or fails under SKEWD_REQUIRE_PEERS=1 (as the
# Rust tests do when a tool they need is missing).
set -euo pipefail
# No grep -q or head after a pipe below: under pipefail their early exit can
# fail the writer with SIGPIPE. Whatever else fails says where.
trap 'echo "check-deb.sh: FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
started=$SECONDS

fail() {
  echo "check-deb.sh: FAIL: $*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "${SKEWD_REQUIRE_PEERS:-}" = 1 ]; then
    fail "$1 is required (SKEWD_REQUIRE_PEERS=1) but not installed"
  fi
  echo "check-deb.sh: skipped: $1 not installed"
  return 1
}
need dpkg-deb || exit 0

deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(packaging/build-deb.sh | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
echo "check-deb.sh: $deb ($(stat -c %s "$deb") bytes)"

tmp=$(mktemp -d /tmp/skewd-check-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$tmp/DEBIAN"

# Control data: name, dependencies (found by cargo-deb: libc), the config
# file as a conffile, a one-line synopsis.
info=$(dpkg-deb -I "$deb")
grep -qx ' Package: skewd' <<<"$info" || fail "dpkg-deb -I: no 'Package: skewd'"
grep -Eq '^ Depends: .*libc6' <<<"$info" || fail "dpkg-deb -I: no Depends on libc6"
grep -Eq '^ +[0-9]+ bytes, +[0-9]+ lines +conffiles' <<<"$info" || fail "dpkg-deb -I: no conffiles"
[ "$(cat "$tmp/DEBIAN/conffiles")" = /etc/skewd/skewd.toml ] ||
  fail "conffiles: $(cat "$tmp/DEBIAN/conffiles")"
synopsis=$(dpkg-deb -f "$deb" Description | sed -n 1p)
[ ${#synopsis} -le 80 ] || fail "the synopsis is longer than 80 characters: $synopsis"
version=$(dpkg-deb -f "$deb" Version)

# The maintainer scripts: an install neither enables nor starts a unit; a
# removal stops them.
for f in preinst postinst; do
  [ -f "$tmp/DEBIAN/$f" ] || continue
  if grep -E 'deb-systemd-invoke (start|restart)|was-enabled defaults to true' "$tmp/DEBIAN/$f" >&2; then
    fail "$f enables or starts a unit on install"
  fi
done
grep -q 'deb-systemd-invoke stop' "$tmp/DEBIAN/prerm" || fail "prerm does not stop the units"

# Exactly the expected files, with the expected modes, owned by root.
bin="$root/usr/bin/skewd"
[ -x "$bin" ] || fail "usr/bin/skewd missing or not executable"
pages="$tmp/pages"
"$bin" generate-assets "$pages" >/dev/null || fail "the packaged binary cannot generate-assets"
{
  echo usr/bin/skewd
  echo etc/skewd/skewd.toml
  for f in "$pages"/*.1; do echo "usr/share/man/man1/$(basename "$f").gz"; done
  echo usr/share/bash-completion/completions/skewd
  echo usr/share/zsh/vendor-completions/_skewd
  echo usr/share/fish/vendor_completions.d/skewd.fish
  for f in systemd/*; do echo "usr/lib/systemd/system/$(basename "$f")"; done
  echo usr/share/doc/skewd/README.md
  echo usr/share/doc/skewd/copyright
  echo usr/share/doc/skewd/examples/skewd.toml
  for f in docs/*.md; do echo "usr/share/doc/skewd/$(basename "$f")"; done
  for f in dashboards/*; do echo "usr/share/doc/skewd/dashboards/$(basename "$f")"; done
} | sort >"$tmp/expected"
(cd "$root" && find . -type f -printf '%P\n' | sort) >"$tmp/actual"
diff -u "$tmp/expected" "$tmp/actual" >&2 || fail "the package's files differ from the expected ones (- expected, + packaged)"
[ -s "$tmp/expected" ] || fail "nothing expected?"
for f in $(cat "$tmp/expected"); do
  case "$f" in
    usr/bin/*) want=755 ;;
    *) want=644 ;;
  esac
  mode=$(stat -c %a "$root/$f")
  [ "$mode" = "$want" ] || fail "$f has mode $mode, not $want"
done
dpkg-deb -c "$deb" | awk '$2 != "0/0" && $2 != "root/root" { print; bad = 1 } END { exit bad }' >&2 ||
  fail "files not owned by root:root"
for f in README.md $(cd docs && ls -- *.md); do
  src=$f
  [ "$f" = README.md ] || src="docs/$f"
  cmp -s "$src" "$root/usr/share/doc/skewd/$f" || fail "usr/share/doc/skewd/$f differs from $src"
done

# The binary runs, is this version, and accepts its default config, which
# is the example config.
out=$("$bin" --version) || fail "skewd --version failed"
[ "$out" = "skewd ${version%-*}" ] || fail "skewd --version says '$out', the package is $version"
cmp -s examples/skewd.toml "$root/etc/skewd/skewd.toml" || fail "etc/skewd/skewd.toml is not examples/skewd.toml"
"$bin" check-config "$root/etc/skewd/skewd.toml" >"$tmp/check-config.out" 2>&1 ||
  fail "skewd check-config on the packaged config: $(cat "$tmp/check-config.out")"
"$bin" --help | grep generate-assets >/dev/null && fail "--help shows the hidden generate-assets"

# The units: ExecStart is the packaged binary; apart from that and comments
# they are the repository's; systemd-analyze verify passes with the binary
# where the unit expects it (as tests/ops.rs does: the path replaced by the
# unpacked binary's).
if need systemd-analyze; then
  units="$tmp/units"
  mkdir "$units"
  for f in systemd/*; do
    name=$(basename "$f")
    packaged="$root/usr/lib/systemd/system/$name"
    if grep '^ExecStart=' "$packaged" | grep -Ev '^ExecStart=/usr/bin/skewd( |$)' >/dev/null; then
      fail "$name: an ExecStart= is not /usr/bin/skewd"
    fi
    diff <(grep -v '^#' "$f" | sed -E 's#^ExecStart=/usr/local/bin/skewd( |$)#ExecStart=/usr/bin/skewd\1#') \
      <(grep -v '^#' "$packaged") >&2 || fail "$name differs from systemd/$name beyond ExecStart"
    sed -E "s#^ExecStart=/usr/bin/skewd( |\$)#ExecStart=$bin\\1#" "$packaged" >"$units/$name"
  done
  for f in "$units"/*; do
    err=$(systemd-analyze verify "$f" 2>&1) || fail "systemd-analyze verify $(basename "$f"): $err"
    if grep -F "$tmp" <<<"$err" >&2; then
      fail "systemd-analyze verify $(basename "$f") warns"
    fi
  done
fi

# The man pages: each renders with a NAME section naming its command.
for f in "$root"/usr/share/man/man1/*.1.gz; do
  name=$(basename "$f" .1.gz)
  if command -v man >/dev/null 2>&1; then
    text=$(MANWIDTH=80 man -l "$f" 2>/dev/null) || fail "man -l $f failed"
    grep -q '^NAME' <<<"$text" || fail "$name: no NAME section"
    grep -Eq "^ +$name +- " <<<"$text" || fail "$name: NAME does not name it"
  else
    zcat "$f" | grep '^\.SH NAME' >/dev/null || fail "$name: no NAME section"
  fi
done

# The completions parse (and bash's registers for skewd).
comp="$root/usr/share/bash-completion/completions/skewd"
bash -n "$comp" || fail "bash -n $comp"
bash -c "source '$comp' && complete -p skewd" >/dev/null || fail "the bash completion registers nothing for skewd"
if command -v zsh >/dev/null 2>&1; then
  zsh -n "$root/usr/share/zsh/vendor-completions/_skewd" || fail "zsh -n _skewd"
fi
if command -v fish >/dev/null 2>&1; then
  fish -n "$root/usr/share/fish/vendor_completions.d/skewd.fish" || fail "fish -n skewd.fish"
fi

echo "check-deb.sh: ok: $(wc -l <"$tmp/expected") files, $(du -k "$deb" | cut -f1) kB, checked in $((SECONDS - started)) s"
