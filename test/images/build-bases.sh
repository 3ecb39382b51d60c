#!/usr/bin/env bash
# Local stand-ins for the public base images that kustomize/images/*.Dockerfile start FROM
# (node:24-bookworm-slim, python:3.12-slim-bookworm, debian:bookworm-slim), which this machine
# cannot pull — no container registry is reachable, the Debian mirror and the package registries
# are. Each is the same Debian bookworm the real ones are built on, made with debootstrap:
#   localhost/modelship-test/debian:bookworm   Debian's minimal base
#   localhost/modelship-test/node:24           + Node 24 (the project's own `node` package) and npm
#   localhost/modelship-test/python:bookworm   + Debian's Python 3 with venv and pip
# buildah with the vfs storage driver and chroot isolation (no daemon, no overlay mounts, no user
# namespaces needed), its storage in ~/.cache/modelship-images; made once, then reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE="${MODELSHIP_IMAGES_CACHE:-$HOME/.cache/modelship-images}"
STORAGE=(--storage-driver vfs --root "$CACHE/storage" --runroot "$CACHE/run")
PREFIX=localhost/modelship-test
# A new value here remakes the bases (what they hold changed).
VERSION=2

buildah_() { buildah "${STORAGE[@]}" "$@"; }
have() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }

mkdir -p "$CACHE"
stamp="$CACHE/bases-v$VERSION"
if [ -f "$stamp" ] && have "$PREFIX/debian:bookworm" && have "$PREFIX/node:24" \
  && have "$PREFIX/python:bookworm"; then
  exit 0
fi

work="$(mktemp -d "$CACHE/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "debootstrap: Debian bookworm (minbase) from deb.debian.org" >&2
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
mkdir -p "$work/context/local-ca"
tar -C "$work/rootfs" -cf "$work/context/rootfs.tar" .
# This machine reaches the package registries through a TLS proxy with a CA of its own: the
# stand-ins trust what the machine trusts (the public bases need not), so that npm and pip in a
# build reach the registries as they do here.
cp /etc/ssl/certs/ca-certificates.crt "$work/context/ca-certificates.crt"
cp /usr/local/share/ca-certificates/*.crt "$work/context/local-ca/" 2>/dev/null || true
cat >"$work/context/Dockerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
COPY local-ca/ /usr/local/share/ca-certificates/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["bash"]
EOF
buildah_ bud --quiet --isolation chroot -t "$PREFIX/debian:bookworm" "$work/context" >/dev/null

echo "node: Node 24 and npm on it" >&2
mkdir -p "$work/node"
cp node_modules/node/bin/node "$work/node/node"
cp -a "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "$work/node/npm"
cat >"$work/node/Dockerfile" <<EOF
FROM $PREFIX/debian:bookworm
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version
CMD ["node"]
EOF
buildah_ bud --quiet --isolation chroot -t "$PREFIX/node:24" "$work/node" >/dev/null

echo "python: Debian's Python 3 with venv and pip" >&2
mkdir -p "$work/python"
cat >"$work/python/Dockerfile" <<EOF
FROM $PREFIX/debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-pip ca-certificates >/dev/null \
  && rm -rf /var/lib/apt/lists/* && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
EOF
buildah_ bud --quiet --isolation chroot -t "$PREFIX/python:bookworm" "$work/python" >/dev/null

touch "$stamp"
# Bases made before (an older VERSION) are dangling now: their space is given back.
buildah_ rmi --prune >/dev/null 2>&1 || true
