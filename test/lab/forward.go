package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Forwarder relays connections made inside a namespace to an address dialed from the test's
// own (root) namespace. See Namespace.Forward.
type Forwarder struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Forward listens on listen (host:port) inside the namespace and relays every connection to
// target, dialed from the calling process's namespace. Processes in lab namespaces reach a
// server of the root namespace this way — the test API server on 127.0.0.1, for one —
// without any interface in the root namespace. Close stops listening and cuts every relayed
// connection, as an outage of the server would; Forward again (same listen address) ends it.
func (ns *Namespace) Forward(listen, target string) (*Forwarder, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", listen) // the socket stays in the namespace it was made in
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: forward %s: %w", ns.Name, listen, err)
	}
	f := &Forwarder{ln: ln, target: target, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		out, err := net.Dial("tcp", f.target)
		if err != nil {
			in.Close()
			continue
		}
		if !f.track(in, out) {
			return
		}
		f.wg.Add(2)
		relay := func(dst, src net.Conn) {
			defer f.wg.Done()
			io.Copy(dst, src)
			// One direction ended: end both, as a proxy that lost its peer does.
			dst.Close()
			src.Close()
			f.mu.Lock()
			delete(f.conns, dst)
			delete(f.conns, src)
			f.mu.Unlock()
		}
		go relay(out, in)
		go relay(in, out)
	}
}

// track records a relayed pair, or closes it when the Forwarder is closed already.
func (f *Forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.conns[c] = true
	}
	return true
}

// Close stops listening, cuts every relayed connection and waits for the relays to end.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
