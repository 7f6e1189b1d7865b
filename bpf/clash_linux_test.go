package bpf

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// TestReplyTupleClash: two frontends share a backend, and one client address and
// port opens a flow to each. Both flows' replies would carry the same tuple
// (backend -> client), so while the first is live the second is dropped (counted,
// reported) rather than taking over the first one's replies; once the first ends,
// the second goes through and the replies are translated to its frontend. A new
// SYN to the first frontend on the same tuple (a reopened connection) is not a
// clash.
func TestReplyTupleClash(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, prog := range []struct {
		name string
		drop uint32
		run  func(d *Datapath, frame []byte) (uint32, []byte)
	}{
		{"xdp", xdpDrop, func(d *Datapath, f []byte) (uint32, []byte) { return runXDP(t, d.XDPProgram(), f) }},
		{"tc", tcxDrop, func(d *Datapath, f []byte) (uint32, []byte) { return runTC(t, d.TCIngressProgram(), f) }},
	} {
		t.Run(prog.name, func(t *testing.T) {
			d := mustLoad(t, Options{Sizes: testSizes})
			base := netip.MustParseAddr("10.1.0.0") // both services' one backend: 10.1.0.1:8080
			first := newService(1, vip4, 80, ProtoTCP, base, 8080, 1)
			second := newService(2, vip4b, 80, ProtoTCP, base, 8080, 1)
			second.backends = first.backends // the same backend id too
			second.table = first.table
			program(t, d, first, second)
			events, err := d.Events()
			if err != nil {
				t.Fatal(err)
			}
			defer events.Close()

			src, be := ap(client4, 43000), ap(base.Next(), 8080)
			fe1, fe2 := ap(vip4, 80), ap(vip4b, 80)
			replyKey := ConntrackKey{Src: be, Dst: src, Proto: ProtoTCP, Reply: true}
			forward := func(fe netip.AddrPort, flags uint8, wantVerdict uint32, want ...Counter) {
				t.Helper()
				in := packet.MustBuild(eth, ipLayer(src.Addr(), fe.Addr()),
					packet.TCP{SrcPort: src.Port(), DstPort: fe.Port(), Seq: 1000, Flags: flags, Window: 65535}, packet.Payload("hello"))
				before := readCounters(t, d)
				ret, out := prog.run(d, in)
				if ret != wantVerdict {
					t.Fatalf("%v flags %#x: verdict %#x, want %#x", fe, flags, ret, wantVerdict)
				}
				if wantVerdict != prog.drop {
					rewritten := packet.MustBuild(eth, ipLayer(src.Addr(), be.Addr()),
						packet.TCP{SrcPort: src.Port(), DstPort: be.Port(), Seq: 1000, Flags: flags, Window: 65535}, packet.Payload("hello"))
					if !bytes.Equal(out[:len(rewritten)], rewritten) {
						t.Fatalf("%v: not rewritten to the backend:\n got %x\nwant %x", fe, out, rewritten)
					}
				}
				class := []Counter{CounterIPv4TCP}
				if prog.name == "tc" {
					class = nil // TC counts outcomes only
				}
				if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(in), append(class, want...)...)); diff != "" {
					t.Fatalf("%v flags %#x: counter deltas differ:%s", fe, flags, diff)
				}
			}
			pass := uint32(xdpPass)
			if prog.name == "tc" {
				pass = tcxNext
			}

			forward(fe1, packet.SYN, pass, CounterFwdNew)
			if r := ctEntry(t, d, replyKey); r.NAT != fe1 {
				t.Fatalf("reply entry translates to %v, want %v", r.NAT, fe1)
			}
			// The same client port to the other frontend: dropped, first flow intact.
			forward(fe2, packet.SYN, prog.drop, CounterCTClash)
			if r := ctEntry(t, d, replyKey); r.NAT != fe1 || r.ServiceID != 1 {
				t.Fatalf("reply entry %+v after the clash, want it still for %v", r, fe1)
			}
			ctMissing(t, d, ConntrackKey{Src: src, Dst: fe2, Proto: ProtoTCP})
			events.SetDeadline(time.Now().Add(time.Second))
			ev, err := events.Read()
			if err != nil {
				t.Fatalf("event: %v", err)
			}
			if ev.Type != EventCTClash || ev.Src != src || ev.Dst != fe2 || ev.ServiceID != 2 || ev.Counter != CounterCTClash {
				t.Fatalf("event %+v, want a ct_clash for %v -> %v", ev, src, fe2)
			}

			// A reopened connection to the first frontend is not a clash.
			forward(fe1, packet.ACK|packet.FIN, pass, CounterFwdEstablished)
			forward(fe1, packet.SYN, pass, CounterCTExpired, CounterFwdNew) // the finished entry is selected again
			if r := ctEntry(t, d, replyKey); r.NAT != fe1 || r.State != StateSynSent || !recent(r.LastSeen) {
				t.Fatalf("reply entry %+v after the reopen, want SYN_SENT for %v", r, fe1)
			}

			// The first flow ends (RST): the second may have the tuple now.
			forward(fe1, packet.RST|packet.ACK, pass, CounterFwdEstablished)
			forward(fe2, packet.SYN, pass, CounterFwdNew)
			if r := ctEntry(t, d, replyKey); r.NAT != fe2 || r.ServiceID != 2 {
				t.Fatalf("reply entry %+v, want it for %v now", r, fe2)
			}
			in := replyFrame(ProtoTCP, be, src, packet.SYN|packet.ACK)
			want := replyFrame(ProtoTCP, fe2, src, packet.SYN|packet.ACK)
			if ret, out := runTC(t, d.TCEgressProgram(), in); ret != tcxNext || !bytes.Equal(out, want) {
				t.Fatalf("reply: verdict %#x\n got %x\nwant %x", ret, out, want)
			}
		})
	}
}
