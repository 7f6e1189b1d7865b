// Package migrate converts MetalLB configuration into Sluice's: the metallb.io CRDs
// (IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer v1beta1 and v1beta2, BFDProfile,
// Community), the 0.12/0.13 AddressPool and the legacy "config" ConfigMap.
//
// Read parses YAML as `kubectl get -o yaml` or a Helm chart writes it; Convert is pure: it
// turns what was read into sluice.dev/v1alpha1 objects (and Secrets for clear-text BGP
// passwords), keeping names, and says per object and field what has no equivalent instead of
// dropping it silently. It reads no cluster and writes nothing; the caller (sluicectl migrate
// metallb) does. Everything here is safe for concurrent use on distinct inputs.
package migrate
