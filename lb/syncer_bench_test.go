package lb_test

import (
	"fmt"
	"testing"

	"github.com/sluice-lb/sluice/lb"
	"github.com/sluice-lb/sluice/lb/lbtest"
)

// BenchmarkSetOneChange: the syncer's own cost for one backend change among 10k services
// (the in-memory table: no syscalls).
func BenchmarkSetOneChange(b *testing.B) {
	var desired []lb.Service
	for i := 0; i < 10000; i++ {
		desired = append(desired, svc(fmt.Sprint("s", i), fmt.Sprintf("10.%d.%d.1", i/256, i%256),
			fmt.Sprintf("10.200.%d.%d:80", i/256, i%256), fmt.Sprintf("10.201.%d.%d:80", i/256, i%256)))
	}
	tab := lbtest.NewTable(1 << 23)
	tab.NoChecks = true
	s, err := lb.NewSyncer(tab, lb.SyncerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Set(desired); err != nil {
		b.Fatal(err)
	}
	changed := append([]lb.Service(nil), desired...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &changed[i%len(changed)]
		if i%2 == 0 {
			c.Backends = c.Backends[:1]
		} else {
			c.Backends = desired[i%len(desired)].Backends
		}
		if _, err := s.Set(changed); err != nil {
			b.Fatal(err)
		}
	}
}
