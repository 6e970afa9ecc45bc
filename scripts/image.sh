#!/usr/bin/env bash
# Build the agent's container image (container/Containerfile) from the same wheels the
# spine_agent Ansible role installs on a VM, and tag it with a hash of its inputs: the
# Containerfile, the base image reference and every wheel's sha256. The same source with the
# same resolved dependencies gives the same tag, and an image with that tag is not rebuilt.
#
# Usage: scripts/image.sh [--base IMAGE] [--name NAME] [--tag-only]
#   --base IMAGE  base image (default: the Containerfile's ARG BASE, an official Python slim)
#   --name NAME   repository part of the reference (default: localhost/super-spine-agent)
#   --tag-only    print the tag and stop (no podman needed)
# The last line on stdout is the image reference (or the tag); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

# The role's reproducible-build settings (ansible/roles/spine_agent/tasks/wheels.yml).
SOURCE_DATE_EPOCH=315532800
ROLE_DEFAULTS=ansible/roles/spine_agent/defaults/main.yml
CONTAINERFILE=container/Containerfile
PY=${VENV:-.venv}/bin/python
MAX_REF=255

die() { echo "image: $*" >&2; exit 2; }
say() { echo "image: $*" >&2; }

base="" name=localhost/super-spine-agent tag_only=0
while (($#)); do
  case "$1" in
    --base) (($# >= 2)) || die "--base needs an image reference"; base=$2; shift 2 ;;
    --name) (($# >= 2)) || die "--name needs a repository name"; name=$2; shift 2 ;;
    --tag-only) tag_only=1; shift ;;
    *) die "unknown argument '${1:0:80}' (allowed: --base IMAGE, --name NAME, --tag-only)" ;;
  esac
done
[ -n "$base" ] || base=$(sed -n 's/^ARG BASE=//p' "$CONTAINERFILE")
if ((${#base} > MAX_REF)) || ! [[ $base =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]]; then
  die "--base '${base:0:80}' is not an image reference such as python:3.11-slim-bookworm"
fi
if ((${#name} > MAX_REF - 40)) || ! [[ $name =~ ^([a-z0-9][a-z0-9.-]*(:[0-9]+)?/)?[a-z0-9]([a-z0-9._/-]*[a-z0-9])?$ ]]; then
  die "--name '${name:0:80}' is not a lower-case repository name such as REGION-docker.pkg.dev/PROJECT/REPO/agent"
fi
[ -x "$PY" ] || die "no $PY (run: bash scripts/setup.sh)"

stage=$(mktemp -d /tmp/spine-image-XXXXXX)
trap 'rm -rf "$stage"' EXIT
wheels=$stage/wheels
mkdir "$wheels"

say "building the agent wheel"
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH "$PY" -m build --wheel --outdir "$wheels" . >"$stage/build.log" 2>&1 \
  || { tail -n 20 "$stage/build.log" >&2; die "the wheel build failed (log above)"; }
agent_wheel=$(find "$wheels" -name 'super_spine_kit-*.whl' -printf '%f\n')
[ "$(wc -l <<<"$agent_wheel")" -eq 1 ] || die "expected one agent wheel, found: ${agent_wheel:-none}"

say "downloading the dependency wheels, as the spine_agent role does"
mapfile -t target < <("$PY" - "$ROLE_DEFAULTS" <<'EOF'
import sys, yaml
defaults = yaml.safe_load(open(sys.argv[1]))
print(defaults["spine_target_python_version"])
for platform in defaults["spine_target_platforms"]:
    print(f"--platform={platform}")
EOF
)
python_version=${target[0]}
"$PY" -m pip download --quiet --disable-pip-version-check --dest "$wheels" --only-binary=:all: \
  --python-version "$python_version" --implementation cp --abi "cp${python_version/./}" \
  "${target[@]:1}" "$wheels/$agent_wheel" >"$stage/download.log" 2>&1 \
  || { tail -n 20 "$stage/download.log" >&2; die "pip download failed (log above)"; }

version=$(cut -d- -f2 <<<"$agent_wheel")
digest=$({ cat "$CONTAINERFILE"; echo "base=$base"; (cd "$wheels" && LC_ALL=C sha256sum -- *.whl | LC_ALL=C sort -k2); } \
  | sha256sum | cut -c1-16)
tag=$version-$digest
if ((tag_only)); then
  echo "$tag"
  exit 0
fi

command -v podman >/dev/null || die "podman is missing (run: bash scripts/setup.sh)"
# Without systemd as PID 1 (CI, the lab host), podman needs runc, cgroupfs and no ulimits.
if [ -z "${CONTAINERS_CONF:-}" ] && [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
  export CONTAINERS_CONF=$PWD/container/containers.conf
fi
ref=$name:$tag
if podman image exists "$ref"; then
  say "$ref is already built (same inputs, same tag)"
else
  say "building $ref on $base"
  podman build --quiet --layers=false --format docker --timestamp "$SOURCE_DATE_EPOCH" --build-arg "BASE=$base" \
    --file "$CONTAINERFILE" --tag "$ref" "$stage" >"$stage/podman.log" 2>&1 \
    || { tail -n 20 "$stage/podman.log" >&2; die "podman build failed (log above)"; }
fi
echo "$ref"
