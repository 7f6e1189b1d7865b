package traffic

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Session is one long-lived TCP connection exchanging a line at an interval. Any failure,
// or an answer from a different server than the first, ends it with an error.
type Session struct {
	Server string // the server that answered first

	conn      net.Conn
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	exchanges int
	err       error
}

// Hold opens a long-lived TCP connection to addr and exchanges a line every interval.
func (c *Client) Hold(addr string, every time.Duration) (*Session, error) {
	conn, err := c.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	first, err := exchange(conn, "0", c.Timeout)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Session{Server: first, conn: conn, stop: make(chan struct{}), done: make(chan struct{}), exchanges: 1}
	go s.run(every, c.Timeout)
	return s, nil
}

func (s *Session) run(every, timeout time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		name, err := exchange(s.conn, fmt.Sprint(i), timeout)
		if err == nil && name != s.Server {
			err = fmt.Errorf("answer %d came from %s, not %s", i, name, s.Server)
		}
		s.mu.Lock()
		if err != nil {
			s.err = fmt.Errorf("long-lived connection broke after %d exchanges: %w", s.exchanges, err)
			s.mu.Unlock()
			return
		}
		s.exchanges++
		s.mu.Unlock()
	}
}

// Stop ends the session and returns how many exchanges succeeded and the error that ended it
// early, if any.
func (s *Session) Stop() (int, error) {
	close(s.stop)
	<-s.done
	s.conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges, s.err
}

// Stream opens new connections back to back, parallel at a time, until stopped: a steady
// load of new flows.
type Stream struct {
	t    *tally
	stop chan struct{}
	wg   sync.WaitGroup
}

// Stream starts a stream of requests to addr.
func (c *Client) Stream(network, addr string, parallel int) *Stream {
	s := &Stream{t: &tally{r: Result{ByServer: map[string]int{}}}, stop: make(chan struct{})}
	for i := 0; i < parallel; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				s.t.add(c.Ask(network, addr))
			}
		}()
	}
	return s
}

// Stop ends the stream and returns its tally.
func (s *Stream) Stop() Result {
	close(s.stop)
	s.wg.Wait()
	return s.t.result()
}
