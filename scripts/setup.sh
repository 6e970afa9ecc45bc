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
  nodejs
  podman runc catatonit uidmap slirp4netns
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

# The TypeScript client (clients/typescript) needs Node.js >= 20.18 with npm. NodeSource's nodejs
# package carries npm; Debian's does not, so its npm package is added only where npm is missing.
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 18) ? 0 : 1)'; then
  echo "setup: Node.js $(node --version) is too old for clients/typescript: install 20.18 or newer" >&2
  exit 2
fi
# The TypeScript client's dependencies (clients/typescript/package-lock.json), when they changed.
npm_stamp="clients/typescript/node_modules/.installed-$(sha256sum clients/typescript/package-lock.json | cut -c1-16)"
if [ ! -f "$npm_stamp" ]; then
  (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error)
  touch "$npm_stamp"
fi
