package bpf

import (
	"fmt"
	"testing"
)

func TestCounterNames(t *testing.T) {
	seen := map[string]bool{}
	for i := range NumCounters {
		name := Counter(i).String()
		if name == "" || seen[name] {
			t.Errorf("counter %d has an empty or duplicate name %q", i, name)
		}
		seen[name] = true
	}
	if got, want := Counter(NumCounters).String(), fmt.Sprintf("counter_%d", NumCounters); got != want {
		t.Errorf("unknown counter String() = %q", got)
	}
	if CounterIPv4TCP.String() != "ipv4_tcp" || CounterMalformedL4.String() != "malformed_l4" {
		t.Errorf("names drifted: %s, %s", CounterIPv4TCP, CounterMalformedL4)
	}
}

func TestCountersArithmetic(t *testing.T) {
	var prev, now Counters
	prev[CounterNonIP] = CounterValue{Packets: 1, Bytes: 60}
	now[CounterNonIP] = CounterValue{Packets: 3, Bytes: 180}
	now[CounterIPv6UDP] = CounterValue{Packets: 1, Bytes: 100}

	d := now.Sub(prev)
	if d[CounterNonIP] != (CounterValue{Packets: 2, Bytes: 120}) || d[CounterIPv6UDP] != (CounterValue{Packets: 1, Bytes: 100}) {
		t.Errorf("Sub = %v", d)
	}
	if got := d.Total(); got != (CounterValue{Packets: 3, Bytes: 220}) {
		t.Errorf("Total = %+v", got)
	}
	if got := d.String(); got != "non_ip=2/120B ipv6_udp=1/100B" {
		t.Errorf("String = %q", got)
	}
	if got := (Counters{}).String(); got != "none" {
		t.Errorf("empty String = %q", got)
	}
}
