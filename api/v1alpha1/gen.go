package v1alpha1

//go:generate go tool controller-gen object paths=./...
//go:generate go tool controller-gen crd paths=./... output:crd:artifacts:config=../../manifests/crds
//go:generate go tool controller-gen crd paths=./... output:crd:artifacts:config=../../manifests/helm/sluice/crds
