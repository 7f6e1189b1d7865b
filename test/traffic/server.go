package traffic

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/sluice-lb/sluice/test/lab"
)

// Server answers in one namespace: each line received on a TCP connection with
// "<name> <line>" (PeerQuestion with "<name> <the client's address>"), each UDP datagram with
// "<name> <payload>".
type Server struct {
	Name string

	tcp      net.Listener
	udp      net.PacketConn
	accepted atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// Serve starts a server listening on port for TCP and UDP, on every address of ns (IPv4 and
// IPv6).
func Serve(ns *lab.Namespace, name string, port int) (*Server, error) {
	s := &Server{Name: name, conns: map[net.Conn]bool{}}
	addr := fmt.Sprintf("[::]:%d", port)
	err := ns.Do(func() error {
		var err error
		if s.tcp, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		s.udp, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		if s.tcp != nil {
			s.tcp.Close()
		}
		return nil, fmt.Errorf("traffic: server %s in %s: %w", name, ns.Name, err)
	}
	s.wg.Add(2)
	go s.serveTCP()
	go s.serveUDP()
	return s, nil
}

// PeerQuestion asks a Server for the client address it sees (see Client.Peer).
const PeerQuestion = "who am I?"

// Accepted is how many TCP connections the server accepted.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			lines := bufio.NewScanner(c)
			for lines.Scan() {
				answer := lines.Text()
				if answer == PeerQuestion { // the client's address as this server sees it
					answer = c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
				}
				if _, err := fmt.Fprintf(c, "%s %s\n", s.Name, answer); err != nil {
					return
				}
			}
		}()
	}
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		reply := append([]byte(s.Name+" "), buf[:n]...)
		_, _ = s.udp.WriteTo(reply, from)
	}
}

// Close stops the server, closing its open connections, and waits for its goroutines.
func (s *Server) Close() error {
	err := errors.Join(s.tcp.Close(), s.udp.Close())
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
