package bpf

import (
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// The accessors read back what was written (the restart read-back), and
// conntrack can be walked and deleted in batches.
func TestMapAccessors(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})

	fes, err := d.Frontends()
	if err != nil || len(fes) != len(svcs) {
		t.Fatalf("Frontends = %v, %v", fes, err)
	}
	for _, s := range svcs {
		if f := fes[s.key]; f.ServiceID != s.id || f.MaglevBase != s.base() || f.MaglevSize != 7 {
			t.Errorf("frontend %v read back as %+v", s.key, f)
		}
		table, err := d.Maglev(s.base(), 7)
		if err != nil {
			t.Fatal(err)
		}
		for i := range table {
			if table[i] != s.table[i] {
				t.Errorf("maglev %v read back as %v", s.table, table)
				break
			}
		}
	}
	bes, err := d.Backends()
	if err != nil || len(bes) != 12 {
		t.Fatalf("Backends = %v, %v", bes, err)
	}
	if b := bes[svcs[2].backends[0]]; b.Addr != svcs[2].addrs[0].Addr() || b.Port != 8080 || b.State != BackendActive {
		t.Errorf("backend read back as %+v", b)
	}
	if err := d.PutMaglev(d.MaglevSlots()-1, []uint32{1, 2}); err == nil {
		t.Error("PutMaglev past the end succeeded")
	}

	// 100 flows: 200 entries.
	for p := range uint16(100) {
		runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, ap(client4, 2000+p), ap(vip4, 80), false))
	}
	var keys []ConntrackKey
	replies := 0
	if err := d.WalkConntrack(func(ks []ConntrackKey, es []ConntrackEntry) bool {
		for i, k := range ks {
			keys = append(keys, k)
			if k.Reply {
				replies++
				if es[i].NAT != ap(vip4, 80) {
					t.Errorf("reply entry %+v: NAT %v", k, es[i].NAT)
				}
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 200 || replies != 100 {
		t.Fatalf("walked %d entries (%d replies), want 200 (100)", len(keys), replies)
	}
	// Delete them all, with a missing key in the middle.
	missing := ConntrackKey{Src: ap(client4, 1), Dst: ap(vip4, 80), Proto: ProtoTCP}
	keys = append(keys[:50:50], append([]ConntrackKey{missing}, keys[50:]...)...)
	n, err := d.DeleteConntrack(keys)
	if err != nil || n != 200 {
		t.Fatalf("DeleteConntrack = %d, %v; want 200", n, err)
	}
	left := 0
	if err := d.WalkConntrack(func(ks []ConntrackKey, _ []ConntrackEntry) bool { left += len(ks); return true }); err != nil || left != 0 {
		t.Errorf("after delete: %d entries, %v", left, err)
	}
	if err := d.DeleteFrontend(svcs[0].key); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteBackend(svcs[0].backends[0]); err != nil {
		t.Fatal(err)
	}
}
