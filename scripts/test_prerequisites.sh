#!/usr/bin/env bash
# What `make test` needs besides .venv, made ready on a fresh Debian machine (as .ci/run did):
# the local PostgreSQL and Redis running, Debian's Chromium for the browser tests (tests/web) and
# Debian's nginx for the proxy test (tests/deploy/test_proxy.py runs docker/nginx.conf).
# Each step is a no-op when its piece is already there.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "need root for: $*" >&2
    return 1
  fi
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && [ -d /etc/postgresql ]; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && command -v redis-server >/dev/null; then
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no || true
fi

missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian's ${missing[*]} for the browser and proxy tests..."
  if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; }; then
    echo "Could not install ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}', then 'make test' again." >&2
    exit 1
  fi
fi
