#!/usr/bin/env bash
# Builds the binaries of a real Kubernetes control plane for the tests (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) plus kwok (fake nodes), from the Go module proxy, into
# a cache outside the repo:
#
#   ${MODELSHIP_K8S_CACHE:-$HOME/.cache/modelship-k8s}/<k8s version>/bin
#
# Idempotent: a binary that is already there and reports the pinned version is not rebuilt, so a
# second run takes about a second. The first run takes 10-25 minutes on 2 cores.
# See docs/k8s-test-cluster.md.
set -euo pipefail

# K8S_VERSION, ETCD_VERSION, KWOK_VERSION: shared with test/k8s/cluster.ts.
# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"

CACHE_ROOT="${MODELSHIP_K8S_CACHE:-$HOME/.cache/modelship-k8s}"
BIN_DIR="$CACHE_ROOT/$K8S_VERSION/bin"

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
export CGO_ENABLED=0
# Go 1.26 builds all three modules; never fetch another toolchain behind the user's back.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# MODELSHIP_K8S_BUILD_PARALLEL=1 builds one package at a time (less memory, slower).
PARALLEL=()
if [[ -n "${MODELSHIP_K8S_BUILD_PARALLEL:-}" ]]; then
  PARALLEL=(-p "$MODELSHIP_K8S_BUILD_PARALLEL")
fi

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

command -v go >/dev/null || {
  echo "build-binaries: 'go' is not on PATH (Go >= 1.26 is needed)" >&2
  exit 1
}

# has_version BINARY NEEDLE: the binary exists, runs --version and prints NEEDLE.
has_version() {
  local bin="$BIN_DIR/$1" out
  [[ -x "$bin" ]] || return 1
  out="$("$bin" --version 2>&1)" || return 1
  [[ "$out" == *"$2"* ]]
}

# step NAME COMMAND...: runs a step and prints how long it took.
step() {
  local name="$1" start end
  shift
  log "$name ..."
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  log "$name done in $((end - start))s"
}

need_etcd=1 need_kube=1 need_kwok=1
has_version etcd "${ETCD_VERSION#v}" && need_etcd=0
if has_version kube-apiserver "$K8S_VERSION" &&
  has_version kube-controller-manager "$K8S_VERSION" &&
  has_version kube-scheduler "$K8S_VERSION"; then
  need_kube=0
fi
has_version kwok "${KWOK_VERSION#v}" && need_kwok=0

if ((need_etcd + need_kube + need_kwok == 0)); then
  log "all binaries present in $BIN_DIR (k8s $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  exit 0
fi

mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelship-k8s-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
TOTAL_START=$(date +%s)
log "building into $BIN_DIR (work dir $WORK, $(go version))"

# ---------------------------------------------------------------------------------------- etcd
build_etcd() {
  local dir="$WORK/etcd"
  mkdir -p "$dir/out"
  cat >"$dir/go.mod" <<EOF
module modelship.local/k8s-build/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  (
    cd "$dir"
    # The server module's own replace lines point at sibling directories; for a dependency they
    # are ignored and its require lines name the real api/client/pkg versions.
    go mod download go.etcd.io/etcd/server/v3
    go build "${PARALLEL[@]}" -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3
  )
  mv -f "$dir/out/etcd" "$BIN_DIR/etcd"
}

# ------------------------------------------------------------------------------------ kubernetes
build_kube() {
  local dir="$WORK/kube" gomod minor major date ldflags
  mkdir -p "$dir/out"
  gomod="$(cd "$dir" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || {
    echo "build-binaries: could not download k8s.io/kubernetes@$K8S_VERSION" >&2
    exit 1
  }
  major="${K8S_VERSION#v}"
  major="${major%%.*}"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  local staging="v0.${K8S_VERSION#v1.}" # v1.36.3 -> v0.36.3
  {
    echo "module modelship.local/k8s-build/kube"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    # directories, which does not apply to a dependency: pin each to the matching release.
    echo "replace ("
    grep -E '^[[:space:]]+k8s\.io/[a-z0-9./-]+ v0\.0\.0$' "$gomod" |
      awk -v v="$staging" '{ printf "\t%s => %s %s\n", $1, $1, v }'
    echo ")"
  } >"$dir/go.mod"
  log "wrapper go.mod has $(grep -c '=>' "$dir/go.mod") staging replaces ($staging)"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  local key val
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=$major" "gitMinor=$minor" \
    "gitTreeState=clean" "buildDate=$date"; do
    key="${kv%%=*}" val="${kv#*=}"
    ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
  (
    cd "$dir"
    go build "${PARALLEL[@]}" -trimpath -ldflags "$ldflags" -o out/ \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
  )
  mv -f "$dir/out/kube-apiserver" "$dir/out/kube-controller-manager" "$dir/out/kube-scheduler" "$BIN_DIR/"
}

# ------------------------------------------------------------------------------------------ kwok
build_kwok() {
  local dir="$WORK/kwok"
  mkdir -p "$dir/out"
  (
    cd "$dir"
    GOFLAGS= GOBIN="$dir/out" go install "${PARALLEL[@]}" -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
      "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  )
  mv -f "$dir/out/kwok" "$BIN_DIR/kwok"
}

if ((need_etcd)); then step "etcd $ETCD_VERSION" build_etcd; else log "etcd present"; fi
if ((need_kwok)); then step "kwok $KWOK_VERSION" build_kwok; else log "kwok present"; fi
if ((need_kube)); then
  step "kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION" build_kube
else
  log "kube-apiserver, kube-controller-manager, kube-scheduler present"
fi

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
  if ! out="$("$BIN_DIR/$b" --version 2>&1)"; then
    echo "build-binaries: $BIN_DIR/$b --version failed: $out" >&2
    exit 1
  fi
  log "$b: $(echo "$out" | head -1)"
done
log "all done in $(($(date +%s) - TOTAL_START))s; binaries in $BIN_DIR"
