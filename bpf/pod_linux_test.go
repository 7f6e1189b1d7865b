package bpf

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

var clusterIP4 = netip.MustParseAddr("10.96.0.10")

// loadPod loads the datapath with SNAT on, a cluster IP service (internal scope) and the
// standard external services, every backend remote.
func loadPod(t testing.TB) (*Datapath, service) {
	d := mustLoad(t, Options{Sizes: testSizes, SNATPorts: PortRange{61000, 61099}})
	s := newService(9, clusterIP4, 80, ProtoTCP, netip.MustParseAddr("10.9.0.0"), 8080, 2)
	s.key.Scope = ScopeInternal
	svcs := append(standardServices(), s)
	program(t, d, svcs...)
	for _, s := range svcs {
		for i, id := range s.backends {
			if err := d.PutBackend(id, Backend{Addr: s.addrs[i].Addr(), Port: s.addrs[i].Port(), Remote: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.SetSNATAddrs(snat4, snat6); err != nil {
		t.Fatal(err)
	}
	return d, s
}

// On a pod's interface, a packet to a cluster IP (and to an external frontend) is DNATed to
// its backend, never SNATed, even to a remote backend: the pod network brings the reply
// back, and TC egress translates it. The external devices' programs leave cluster IPs alone.
func TestTCPodIngress(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, cip := loadPod(t)
	pod := netip.MustParseAddr("10.244.1.11")
	for i, to := range []netip.AddrPort{ap(clusterIP4, 80), ap(vip4, 80)} {
		src := ap(pod, uint16(45000+i))
		in := flowFrame(ProtoTCP, src, to, false)
		var be netip.AddrPort
		if to.Addr() == clusterIP4 {
			be = cip.addrs[cip.pick(pod, src.Port())]
		} else {
			s := standardServices()[0]
			be = s.addrs[s.pick(pod, src.Port())]
		}
		ret, out := runTC(t, d.TCPodIngressProgram(), in)
		if want := flowFrame(ProtoTCP, src, be, false); ret != tcxNext || !bytes.Equal(out, want) {
			t.Errorf("%v: verdict %#x\n got %x\nwant %x (DNAT only)", to, ret, out, want)
		}
		if ct := ctEntry(t, d, ConntrackKey{Src: src, Dst: to, Proto: ProtoTCP}); ct.SNATPort != 0 {
			t.Errorf("%v: SNATed with port %d", to, ct.SNATPort)
		}
		reply := replyFrame(ProtoTCP, be, src, packet.SYN|packet.ACK)
		if ret, out := runTC(t, d.TCEgressProgram(), reply); ret != tcxNext || !bytes.Equal(out, replyFrame(ProtoTCP, to, src, packet.SYN|packet.ACK)) {
			t.Errorf("%v: reply not translated back at egress (verdict %#x)", to, ret)
		}
	}
	in := flowFrame(ProtoTCP, ap(client4, 46000), ap(clusterIP4, 80), false)
	for name, prog := range map[string]func() (uint32, []byte){
		"xdp":        func() (uint32, []byte) { return runXDP(t, d.XDPProgram(), in) },
		"tc ingress": func() (uint32, []byte) { return runTC(t, d.TCIngressProgram(), in) },
	} {
		if ret, out := prog(); (ret != xdpPass && ret != tcxNext) || !bytes.Equal(out[:len(in)], in) {
			t.Errorf("%s on an external device translated a packet to a cluster IP (verdict %d)", name, ret)
		}
	}
}

// FuzzTCPodIngress feeds arbitrary frames to the pod-interface program: it continues or
// drops, never redirects, and a valid frame it changes stays valid.
func FuzzTCPodIngress(f *testing.F) {
	testenv.RequirePrivileged(f)
	d, _ := loadPod(f)
	f.Add(flowFrame(ProtoTCP, ap(netip.MustParseAddr("10.244.1.11"), 1234), ap(clusterIP4, 80), false))
	fuzzTC(f, d.TCPodIngressProgram(), tcxNext, tcxDrop)
}

// FuzzTCIngress feeds arbitrary frames to the external devices' TC ingress with SNAT and DSR
// set up (remote backends, DSR tunnels to this node decapsulated): it continues, drops or
// redirects, and a valid frame it changes stays valid.
func FuzzTCIngress(f *testing.F) {
	testenv.RequirePrivileged(f)
	d, _ := loadPod(f)
	s := standardServices()[0]
	must(f, d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: uint32(len(s.table)), Flags: FrontendDSR}))
	inner := flowFrame(ProtoTCP, ap(client4, 1234), s.addrs[0], false)
	p, err := packet.Parse(inner)
	must(f, err)
	f.Add(packet.MustBuild(append([]packet.Layer{p.Layers[0], packet.IPv4{Src: vip4, Dst: snat4, ID: 80}}, p.Layers[1:]...)...))
	f.Add(flowFrame(ProtoTCP, ap(client4, 1234), ap(vip4, 80), false))
	f.Add(replyFrame(ProtoUDP, ap(netip.MustParseAddr("10.2.0.1"), 5353), ap(snat4, 61000), 0))
	const tcActRedirect = 7
	fuzzTC(f, d.TCIngressProgram(), tcxNext, tcxDrop, tcActRedirect)
}

// fuzzTC runs prog on the seeds, the XDP cases and the fuzzer's frames: the verdict must be
// one of verdicts, and a valid frame that comes out changed must still be valid.
func fuzzTC(f *testing.F, prog *ebpf.Program, verdicts ...uint32) {
	for _, tc := range xdpCases() {
		f.Add(tc.frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < packet.EthernetLen || len(frame) > maxLinearFrame {
			return // BPF_PROG_RUN takes 14 to 3520 bytes: nothing to check for this input
		}
		ret, out, err := runTCErr(prog, frame)
		if err != nil {
			if errors.Is(err, unix.EINVAL) && shortIP(frame) {
				return // the kernel's test runner refuses an skb shorter than its IP header
			}
			t.Fatalf("BPF_PROG_RUN (tc) on %d bytes: %v", len(frame), err)
		}
		if !slices.Contains(verdicts, ret) {
			t.Fatalf("verdict %#x, want one of %v", ret, verdicts)
		}
		if !bytes.Equal(out, frame) && packet.Verify(frame) == nil {
			if err := packet.Verify(out); err != nil {
				t.Fatalf("a valid frame came out invalid: %v\n got %x\n was %x", err, out, frame)
			}
		}
	})
}
