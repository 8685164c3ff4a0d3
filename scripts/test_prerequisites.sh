#!/usr/bin/env bash
# What `make test` needs besides .venv, made ready on a fresh Debian machine (as .ci/run did):
# the local PostgreSQL and Redis running, and Debian's Chromium for the browser tests (tests/web).
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

if [ ! -x "$CHROMIUM" ]; then
  echo "Installing Debian's chromium for the browser tests (tests/web)..."
  if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; then
    echo "Could not install chromium: run 'sudo apt-get install -y chromium', then 'make test' again." >&2
    exit 1
  fi
fi
