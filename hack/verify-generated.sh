#!/usr/bin/env bash
# Regenerates every generated file (bpf2go output, deepcopy, CRD YAML, the rendered chart) and fails if that
# changes, adds or removes anything: generated files must match their sources.
set -euo pipefail
cd "$(dirname "$0")/.."

sums() { sha256sum bpf/*_bpfel.go bpf/*_bpfel.o api/v1alpha1/zz_generated.deepcopy.go manifests/crds/*.yaml manifests/helm/sluice/crds/*.yaml manifests/sluice.yaml; }
before=$(sums)
echo "generate: regenerating bpf2go output, deepcopy, CRD YAML and manifests/sluice.yaml"
go generate ./api/... ./bpf/...
hack/render-manifests.sh
after=$(sums)
if [ "$before" != "$after" ]; then
  echo "generate: generated files are out of date; run 'make generate' and commit the result:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
echo "generate: generated files are up to date"
