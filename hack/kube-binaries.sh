#!/usr/bin/env bash
# Builds kube-apiserver, kube-proxy, kubectl, etcd and helm from the Go module proxy into a cache
# outside the repo, keyed by version, and prints the directory (usable as KUBEBUILDER_ASSETS).
# The first build takes several minutes; later calls return at once.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
HELM_VERSION=${HELM_VERSION:-4.3.2}
CACHE=${SLUICE_CACHE:-/var/cache/sluice}
out="$CACHE/kube/k8s-v$KUBE_VERSION-etcd-v$ETCD_VERSION-helm-v$HELM_VERSION"

kube=(kube-apiserver kube-proxy kubectl)
have() {
  for b in "${kube[@]}" etcd helm; do [ -x "$out/$b" ] || return 1; done
}
if have; then echo "$out"; exit 0; fi

log() { echo "kube-binaries: $*" >&2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
minor=${KUBE_VERSION#*.}   # 37.2

if [ ! -x "$out/etcd" ]; then
  log "building etcd v$ETCD_VERSION (about a minute)"
  mkdir "$work/etcd" && cd "$work/etcd"
  go mod init sluice.local/build-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go build -trimpath -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$out/etcd.tmp" "$out/etcd"
fi

if [ ! -x "$out/helm" ]; then
  log "building helm v$HELM_VERSION (a minute or two)"
  GOBIN="$work/helm" go install -trimpath "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION" >&2
  mv "$work/helm/helm" "$out/helm"
fi

missing=()
for b in "${kube[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "building ${missing[*]} v$KUBE_VERSION (several minutes on a fresh machine)"
  mkdir "$work/kube" && cd "$work/kube"
  go mod init sluice.local/build-kube >/dev/null 2>&1
  modfile=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
  # Every staging module is replaced by its published k8s.io/<name> v0.<minor>.
  for name in $(sed -n 's#^\s*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/.*#\1#p' "$modfile"); do
    go mod edit -replace "k8s.io/$name=k8s.io/$name@v0.$minor"
  done
  go mod edit -require "k8s.io/kubernetes@v$KUBE_VERSION"
  for b in "${missing[@]}"; do go get "k8s.io/kubernetes/cmd/$b@v$KUBE_VERSION" >&2; done
  for b in "${missing[@]}"; do
    go build -trimpath -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
    mv "$out/$b.tmp" "$out/$b"
  done
fi
have
log "cached in $out"
echo "$out"
