#!/usr/bin/env bash
# Renders the Helm chart with its default values into manifests/sluice.yaml: the whole install
# for `kubectl apply -f` (namespace sluice-system, CRDs included). Needs helm (hack/kube-binaries.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
helm=${HELM:-$(hack/kube-binaries.sh)/helm}
{
  echo "# Sluice, rendered from manifests/helm/sluice with its default values by hack/render-manifests.sh."
  echo "# kubectl apply --server-side -f manifests/sluice.yaml; set the agent's devices (--devices) first."
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: sluice-system"
  "$helm" template sluice manifests/helm/sluice --namespace sluice-system --include-crds
} > manifests/sluice.yaml.tmp
mv manifests/sluice.yaml.tmp manifests/sluice.yaml
