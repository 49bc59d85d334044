#!/usr/bin/env bash
# Build the Debian package, install it with dpkg, check what it installed
# (files, modes, the system user, the unit), run the installed `meetgate
# check` on the installed configuration as the service user, verify the unit
# with systemd-analyze, install it again (upgrade path), then purge it and
# check what purge leaves. Needs root, cargo-deb, dpkg and systemd-analyze.
#
#   bash packaging/test-deb.sh                    # cargo deb: release build
#   bash packaging/test-deb.sh --binary PATH      # package a binary already
#                                                 # built (CI: target/debug)
#
# Refuses to run when a meetgate package is already installed: it would
# purge it.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=
if [ "${1:-}" = "--binary" ]; then
  binary=${2:?--binary needs a path}
fi

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i)"
for tool in cargo-deb dpkg dpkg-deb systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
if dpkg-query -W -f='${Status}' meetgate 2>/dev/null | grep -q installed; then
  fail "a meetgate package is installed already; this test would purge it"
fi

work=$(mktemp -d)
installed=
cleanup() {
  if [ -n "$installed" ]; then dpkg --purge meetgate >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------------ build
if [ -n "$binary" ]; then
  [ -x "$binary" ] || fail "$binary is not an executable"
  # cargo-deb takes the binary from <target dir>/release/: a target dir of
  # its own, so no real release build is touched.
  mkdir -p "$work/target/release"
  cp "$binary" "$work/target/release/meetgate"
  step "packaging $binary (cargo deb --no-build)"
  CARGO_TARGET_DIR="$work/target" cargo deb --no-build --fast --output "$work/" >"$work/cargo-deb.log" 2>&1 \
    || { cat "$work/cargo-deb.log"; fail "cargo deb"; }
else
  step "building the release binary and the package (cargo deb)"
  cargo deb --output "$work/" >"$work/cargo-deb.log" 2>&1 \
    || { cat "$work/cargo-deb.log"; fail "cargo deb"; }
fi
deb=$(ls "$work"/meetgate_*.deb)
step "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# ------------------------------------------------------ the package itself
control=$(dpkg-deb --field "$deb")
grep -q '^Depends: .*libc6' <<<"$control" || fail "Depends lacks the computed libc6: $control"
grep -q '^Depends: .*systemd | systemd-standalone-sysusers' <<<"$control" || fail "Depends lacks systemd-sysusers: $control"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
for f in /etc/meetgate/meetgate.toml /etc/meetgate/meetgate.toml.example /etc/meetgate/meetgate.env /etc/logrotate.d/meetgate; do
  grep -qx "$f" "$work/conffiles" || fail "$f is not a conffile: $(cat "$work/conffiles")"
done

# ----------------------------------------------------------------- install
step "dpkg -i"
installed=1
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }

# mode owner group of a path, as stat prints them.
expect_stat() {
  local want=$1 path=$2 got
  [ -e "$path" ] || fail "$path is missing"
  got=$(stat -c '%a %U %G' "$path")
  [ "$got" = "$want" ] || fail "$path: $got, expected $want"
}

getent passwd meetgate >/dev/null || fail "no user meetgate"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd meetgate)
[ "$uid" -lt 1000 ] || fail "meetgate is not a system user (uid $uid)"
[ "$home" = /var/lib/meetgate ] || fail "meetgate's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "meetgate's shell is $shell"
[ "$(getent group meetgate | cut -d: -f3)" = "$gid" ] || fail "meetgate's primary group is not meetgate"

expect_stat "755 root root" /usr/bin/meetgate
expect_stat "750 root meetgate" /etc/meetgate
expect_stat "640 root meetgate" /etc/meetgate/meetgate.toml
expect_stat "644 root root" /etc/meetgate/meetgate.toml.example
expect_stat "600 root root" /etc/meetgate/meetgate.env
expect_stat "640 root meetgate" /etc/meetgate/tls/gateway-key.pem
expect_stat "644 root root" /etc/meetgate/tls/gateway.pem
expect_stat "644 root root" /usr/lib/systemd/system/meetgate.service
expect_stat "644 root root" /usr/lib/sysusers.d/meetgate.conf
expect_stat "644 root root" /etc/logrotate.d/meetgate
expect_stat "644 root root" /usr/share/doc/meetgate/copyright
[ -L /etc/systemd/system/multi-user.target.wants/meetgate.service ] || fail "the service is not enabled"
/usr/bin/meetgate --version | grep -q '^meetgate ' || fail "meetgate --version"

step "meetgate check on the installed configuration, as the service user"
# The unit's ExecStartPre: the service refuses to start on what fails here.
runuser -u meetgate -- /usr/bin/meetgate check --config /etc/meetgate/meetgate.toml >"$work/check.log" 2>&1 \
  || { cat "$work/check.log"; fail "meetgate check of /etc/meetgate/meetgate.toml"; }
grep -q ': OK (' "$work/check.log" || fail "check did not say OK: $(cat "$work/check.log")"
# `check` only warns about certificate files that do not exist yet (`run`
# refuses them): the one warning expected is the absence of routes.
if grep -v 'no \[\[route\]\] is defined' "$work/check.log" | grep -q 'warning'; then
  cat "$work/check.log"; fail "check warned about the installed configuration"
fi
# Nobody else reads the key or the configuration.
for f in /etc/meetgate/tls/gateway-key.pem /etc/meetgate/meetgate.toml /etc/meetgate/meetgate.env; do
  if runuser -u nobody -- cat "$f" >/dev/null 2>&1; then fail "user nobody can read $f"; fi
done

step "systemd-analyze verify and security"
systemd-analyze verify /usr/lib/systemd/system/meetgate.service >"$work/verify.log" 2>&1 \
  || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
[ ! -s "$work/verify.log" ] || { cat "$work/verify.log"; fail "systemd-analyze verify warned"; }
# The unit's exposure score stays at or below 2.0 ("OK"; 1.7 when written).
systemd-analyze security --offline=true --threshold=20 /usr/lib/systemd/system/meetgate.service >"$work/security.log" 2>&1 \
  || { tail -5 "$work/security.log"; fail "systemd-analyze security: exposure above 2.0"; }
step "$(grep -o 'Overall exposure level.*' "$work/security.log")"

if command -v logrotate >/dev/null; then
  logrotate --debug /etc/logrotate.d/meetgate >"$work/logrotate.log" 2>&1 \
    || { cat "$work/logrotate.log"; fail "logrotate rejects /etc/logrotate.d/meetgate"; }
  if grep -qi 'error' "$work/logrotate.log"; then cat "$work/logrotate.log"; fail "logrotate reports an error"; fi
fi

# ------------------------------------------------ reinstall: postinst again
step "dpkg -i again (postinst is idempotent, the certificate is kept)"
key_before=$(sha256sum /etc/meetgate/tls/gateway-key.pem)
dpkg -i "$deb" >"$work/dpkg2.log" 2>&1 || { cat "$work/dpkg2.log"; fail "second dpkg -i"; }
[ "$(sha256sum /etc/meetgate/tls/gateway-key.pem)" = "$key_before" ] || fail "reinstall replaced the TLS key"
expect_stat "640 root meetgate" /etc/meetgate/meetgate.toml

# ------------------------------------------------------------------- purge
step "dpkg --purge"
mkdir -p /var/lib/meetgate /var/log/meetgate   # as the running service would have
dpkg --purge meetgate >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
installed=
for path in /usr/bin/meetgate /etc/meetgate /var/lib/meetgate /var/log/meetgate \
  /usr/lib/systemd/system/meetgate.service /etc/systemd/system/multi-user.target.wants/meetgate.service \
  /etc/logrotate.d/meetgate; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path is left after purge"
done

echo "test-deb: OK"
