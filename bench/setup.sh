#!/usr/bin/env bash
# Installs the benchmark peers without starting any system service. Idempotent.
#
# - vsftpd: installed with apt under a policy-rc.d that exits 101 (no daemon on port 21), and any
#   packaged vsftpd that is running anyway is stopped afterwards.
# - ProFTPD with mod_tls: NOT installed system-wide (proftpd-core conflicts with vsftpd: both provide
#   ftp-server). In Debian 12 the proftpd binary is in proftpd-core and mod_tls.so in proftpd-mod-crypto;
#   both are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into bench/.peers/proftpd/,
#   together with the shared libraries they need that the machine lacks. bench/run.py runs the binary
#   with LD_LIBRARY_PATH pointing there.
# - pyftpdlib (+ pyopenssl): from the project's .venv (`pip install -e '.[test]'` installs them).
# - py-spy (optional, for profiles): into .venv from PyPI when available.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
peers="$here/.peers"
prefix="$peers/proftpd"
debs="$peers/debs"

export DEBIAN_FRONTEND=noninteractive
section() { printf '\n== %s ==\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_updated=no
apt_update_once() {
  if [ "$apt_updated" = no ]; then
    as_root apt-get update -q >/dev/null
    apt_updated=yes
  fi
}

# ---------------------------------------------------------------------------------------------
section "vsftpd and the clients (apt, no services started)"
wanted=(vsftpd curl openssl procps)
missing=()
for pkg in "${wanted[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
  policy=/usr/sbin/policy-rc.d
  created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    created_policy=yes
    trap 'as_root rm -f "$policy"' EXIT
  fi
  apt_update_once
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$created_policy" = yes ]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
else
  echo "already installed: ${wanted[*]}"
fi
# No packaged vsftpd may keep running (it would sit on port 21); bench/run.py starts its own.
as_root service vsftpd stop >/dev/null 2>&1 || true
for pid in $(pgrep -x vsftpd || true); do
  # Only the packaged daemon (no config argument, or /etc/vsftpd.conf): vsftpd instances that tests or
  # bench/run.py start with their own config file are left alone.
  args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$args" in
    "/usr/sbin/vsftpd " | "/usr/sbin/vsftpd /etc/vsftpd.conf " | "vsftpd " | "vsftpd /etc/vsftpd.conf ")
      as_root kill "$pid" 2>/dev/null || true ;;
  esac
done
/usr/sbin/vsftpd -v 0>&1 | head -1 || true  # vsftpd prints its version on fd 0

# ---------------------------------------------------------------------------------------------
section "ProFTPD + mod_tls (unpacked into bench/.peers/proftpd, not installed)"
mkdir -p "$debs" "$prefix"
stamp="$prefix/.complete"
if [ -f "$stamp" ] && [ -x "$prefix/usr/sbin/proftpd" ] && [ -f "$prefix/usr/lib/proftpd/mod_tls.so" ]; then
  echo "already unpacked: $(cat "$stamp")"
else
  apt_update_once
  # Packages whose files we need: the daemon, mod_tls, and every library dependency not installed here.
  need=(proftpd-core proftpd-mod-crypto)
  for pkg in proftpd-core proftpd-mod-crypto; do
    deps="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
      --no-enhances "$pkg" | awk '/^  (Pre)?Depends:/ {print $2}' | tr -d '<>')"
    for dep in $deps; do
      case "$dep" in
        lib*) installed "$dep" || need+=("$dep") ;;
      esac
    done
  done
  # Second level: libraries needed by those libraries (libmemcached needs libsasl2 on some images).
  for pkg in "${need[@]}"; do
    case "$pkg" in lib*) ;; *) continue ;; esac
    deps="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
      --no-enhances "$pkg" | awk '/^  (Pre)?Depends:/ {print $2}' | tr -d '<>')"
    for dep in $deps; do
      case "$dep" in
        lib*) installed "$dep" || need+=("$dep") ;;
      esac
    done
  done
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "downloading: ${need[*]}"
  (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "${need[@]}")
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$prefix"
  done
  printf '%s\n' "${need[@]}" | tr '\n' ' ' >"$stamp"
fi

libpath="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu:$prefix/usr/lib/proftpd"
unresolved="$(LD_LIBRARY_PATH="$libpath" ldd "$prefix/usr/sbin/proftpd" "$prefix/usr/lib/proftpd/mod_tls.so" \
  | grep 'not found' || true)"
if [ -n "$unresolved" ]; then
  echo "ProFTPD still lacks shared libraries:" >&2
  echo "$unresolved" >&2
  exit 1
fi
LD_LIBRARY_PATH="$libpath" "$prefix/usr/sbin/proftpd" -v 2>&1 | head -1

# ---------------------------------------------------------------------------------------------
section "Python peers and tools (.venv)"
if [ ! -x "$repo/.venv/bin/python" ]; then
  python3 -m venv "$repo/.venv"
  "$repo/.venv/bin/pip" install -q -e "$repo[test]"
fi
if ! "$repo/.venv/bin/python" -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then
  "$repo/.venv/bin/pip" install -q -e "$repo[test]"
fi
"$repo/.venv/bin/python" -c 'import pyftpdlib; print("pyftpdlib", pyftpdlib.__ver__)'
if [ ! -x "$repo/.venv/bin/py-spy" ]; then
  "$repo/.venv/bin/pip" install -q py-spy || echo "py-spy not available: profiles fall back to cProfile"
fi
[ -x "$repo/.venv/bin/py-spy" ] && "$repo/.venv/bin/py-spy" --version

echo
echo "peers ready; run: .venv/bin/python bench/run.py [--quick]"
