#!/usr/bin/env bash
# Install what keys_guard needs to build and test on Debian bookworm (as root).
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
  build-essential
  postgresql-15
  postgresql-server-dev-15
  libssl-dev
  postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl
  libipc-run-perl
  libdbd-pg-perl
  postgresql-contrib
  pgbouncer
  libssl-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts a "main" cluster when postgresql is installed; keys_guard
  # uses throw-away clusters instead and does not touch that one.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
