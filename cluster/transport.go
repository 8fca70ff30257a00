package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds a TLS handshake on the Raft and RPC ports.
const handshakeTimeout = 5 * time.Second

// tlsStream is Raft's stream layer: mutual TLS where both ends must present
// a server SVID of this cluster's CA that has not been revoked. Handshakes
// run off the accept path, so a slow or hostile dialer cannot stall Raft.
type tlsStream struct {
	ln      net.Listener
	config  *tls.Config // server side; also used for dialing
	logger  *slog.Logger
	conns   chan net.Conn
	done    chan struct{}
	closeMu sync.Once
}

func newTLSStream(ln net.Listener, config *tls.Config, logger *slog.Logger) *tlsStream {
	s := &tlsStream{ln: ln, config: config, logger: logger, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

func (s *tlsStream) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.logger.Warn("raft transport: accept failed", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		go s.handshake(c)
	}
}

func (s *tlsStream) handshake(c net.Conn) {
	tc := tls.Server(c, s.config)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.logger.Warn("raft transport: refused a connection", "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept implements net.Listener.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s *tlsStream) Close() error {
	var err error
	s.closeMu.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

// Addr implements net.Listener.
func (s *tlsStream) Addr() net.Addr { return s.ln.Addr() }

// Dial implements raft.StreamLayer.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	cfg := s.config.Clone()
	return tls.DialWithDialer(d, "tcp", string(address), cfg)
}

// advertisedAddr makes the listener report the advertised address to
// Raft, which hands it to peers.
type advertisedStream struct {
	*tlsStream
	addr net.Addr
}

func (a advertisedStream) Addr() net.Addr { return a.addr }
