package agent

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/internal/modeltest"
	"github.com/sluice-lb/sluice/internal/source"
)

// BenchmarkRebuildOneMore measures the agent's rebuild after one more LoadBalancer Service
// at 10k (standalone mode: model, allocation, BGP desired set and the speaker's diff; the
// peer is on a closed loopback port, so paths are kept but never sent): the agent's share of
// the single-add latency that BenchmarkBGP measures end to end.
func BenchmarkRebuildOneMore(b *testing.B) {
	const services = 10000
	doc := modeltest.BenchConfig("peerAddress: 127.0.0.1, peerPort: 1, peerASN: 64512, localASN: 64513, connectRetryTime: 60s", services)
	dec := source.NewDecoder()
	objs, errs := dec.Decode(strings.NewReader(doc), "bench.yaml")
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	a, err := New(Config{ConfigPath: "bench.yaml", NodeName: "node", StateDir: b.TempDir(), BPFFS: "/sys/fs/bpf"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.speaker.Close(b.Context(), false) })
	for _, o := range objs {
		must(b, a.store.Apply(source.Event{Type: source.Upsert, Object: o}))
	}
	must(b, a.store.Apply(source.Event{Type: source.Synced}))
	a.rebuild()
	b.ResetTimer()
	for i := range b.N {
		more, errs := dec.Decode(strings.NewReader(modeltest.BenchService(services+i)), "more.yaml")
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		must(b, a.store.Apply(source.Event{Type: source.Upsert, Object: more[0]}))
		a.rebuild()
	}
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
