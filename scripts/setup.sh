#!/usr/bin/env bash
# Install everything the kit needs on a Debian 12 control machine: Debian packages and the venv.
# Idempotent and quick when nothing changed: apt runs only for missing packages, pip only when
# pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  git make python3-venv python3-pip
  qemu-system-x86 qemu-utils debootstrap openssh-client
  redis-server shellcheck zstd e2fsprogs xfsprogs util-linux iproute2 procps
  postgresql openssl
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[infra,ansible,test,dev]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
