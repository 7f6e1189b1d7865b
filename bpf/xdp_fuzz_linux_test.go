package bpf

import (
	"bytes"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// maxLinearFrame is the largest frame BPF_PROG_RUN hands an XDP program in
// one buffer: a page minus XDP_PACKET_HEADROOM (256) and the skb_shared_info
// tailroom (320 on x86-64). Linux 6.18 accepts longer input even for programs
// without BPF_F_XDP_HAS_FRAGS but puts the rest in fragments the program
// cannot see, so data_end - data is no longer the frame length.
const maxLinearFrame = 4096 - 256 - 320

// FuzzXDP feeds arbitrary frames through the XDP program: whatever the bytes,
// it passes them, leaves them untouched and counts each in exactly one
// counter, by its length.
func FuzzXDP(f *testing.F) {
	testenv.RequirePrivileged(f)
	for _, tc := range xdpCases() {
		f.Add(tc.frame)
	}
	d := loadDatapath(f, Options{})
	prog := d.XDPProgram()

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < packet.EthernetLen || len(frame) > maxLinearFrame {
			t.Skip("BPF_PROG_RUN needs 14 to 3520 bytes")
		}
		before := readCounters(t, d)
		ret, out := runXDP(t, prog, frame)
		delta := readCounters(t, d).Sub(before)

		if ret != xdpPass {
			t.Fatalf("verdict %d, want XDP_PASS", ret)
		}
		if !bytes.Equal(out, frame) {
			t.Fatalf("frame changed:\n got %x\nwant %x", out, frame)
		}
		var got []Counter
		for i, v := range delta {
			if v != (CounterValue{}) {
				got = append(got, Counter(i))
			}
		}
		if len(got) != 1 || delta[got[0]] != (CounterValue{Packets: 1, Bytes: uint64(len(frame))}) {
			t.Fatalf("counted in %v (%+v), want exactly one counter +1 packet +%d bytes", got, delta, len(frame))
		}
		// Differential check against the Go parser, which is at least as
		// strict: what the program calls malformed, it rejects too. (Not for
		// first fragments: the program reads their L4 header, Parse does not.)
		if malformed(got[0]) && packet.Verify(frame) == nil && !firstFragment(frame) {
			t.Fatalf("program counts %s, but packet.Verify accepts the frame", got[0])
		}
	})
}

// firstFragment reports whether frame parses as IPv4 with the
// more-fragments flag set.
func firstFragment(frame []byte) bool {
	p, err := packet.Parse(frame)
	return err == nil && p.IPv4() != nil && p.IPv4().Flags&packet.IPv4MoreFragments != 0
}
