package modeltest

import (
	"fmt"
	"strings"
)

// BenchConfig is the standalone config of the BGP benchmarks: Node "node" at 10.77.0.2, pool
// bench (10.200.0.0/16), BGPPeer router with the given spec fields, an advertisement of every
// pool, and services LoadBalancer Services (BenchService 0 to services-1).
func BenchConfig(peerSpec string, services int) string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Node
metadata: {name: node}
status: {addresses: [{type: InternalIP, address: 10.77.0.2}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: bench}
spec: {blocks: [{cidr: 10.200.0.0/16}]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec: {` + peerSpec + `}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
`)
	for i := range services {
		b.WriteString(BenchService(i))
	}
	return b.String()
}

// BenchService is the i-th LoadBalancer Service of BenchConfig, a document of its own.
func BenchService(i int) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: s%05d, namespace: bench}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n", i)
}
