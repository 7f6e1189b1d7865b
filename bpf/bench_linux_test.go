package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// BenchmarkXDPPass measures the XDP program per packet with BPF_PROG_RUN and
// Repeat: one syscall runs it b.N times in the kernel. ns/packet is the
// kernel's own per-run timing (whole nanoseconds); ns/op is wall time per
// run including the amortized syscall. "empty" is a two-instruction XDP_PASS
// program: the harness's own cost, to read the others against. Numbers
// only, never pass/fail.
func BenchmarkXDPPass(b *testing.B) {
	testenv.RequirePrivileged(b)
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		License:      "MIT",
	})
	if err != nil {
		b.Fatalf("load empty program: %v", err)
	}
	defer empty.Close()

	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4_tcp", packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, syn, packet.Payload(make([]byte, 64)))},
		{"ipv6_udp", packet.MustBuild(eth, packet.IPv6{Src: client6, Dst: vip6}, dns, packet.Payload(make([]byte, 64)))},
		{"vlan_ipv4_udp", packet.MustBuild(eth, packet.VLAN{ID: 42}, packet.IPv4{Src: client4, Dst: vip4}, dns)},
		{"arp", packet.MustBuild(eth, packet.ARP{Op: packet.ARPRequest, SenderMAC: macClient, SenderIP: client4, TargetIP: vip4})},
	}
	progs := []struct {
		name string
		prog *ebpf.Program
	}{
		{"empty", empty},
		{"counters", mustLoad(b, Options{}).XDPProgram()},
		{"no_counters", mustLoad(b, Options{DisableCounters: true}).XDPProgram()},
	}
	for _, p := range progs {
		for _, f := range frames {
			b.Run(p.name+"/"+f.name, func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				ret, perRun, err := p.prog.Benchmark(f.frame, b.N, nil)
				if err != nil {
					b.Fatalf("BPF_PROG_RUN: %v", err)
				}
				if ret != xdpPass {
					b.Fatalf("verdict %d, want XDP_PASS", ret)
				}
				b.ReportMetric(float64(perRun.Nanoseconds()), "ns/packet")
			})
		}
	}
}
