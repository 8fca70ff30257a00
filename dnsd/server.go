package dnsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxUDPSize is the largest UDP reply sent, whatever a client offers,
	// and the buffer advertised in our OPT record.
	maxUDPSize = 4096
	// DefaultForwardTimeout is how long one upstream gets to answer before
	// the next one is tried.
	DefaultForwardTimeout = 2 * time.Second
)

// Errors of [Server.Start].
var (
	ErrStarted = errors.New("dnsd: server already started")
	ErrClosed  = errors.New("dnsd: server was shut down")
)

// Options configure a [Server].
type Options struct {
	// Listen are the addresses to serve, on UDP and TCP each. Required. A
	// port of 0 picks one free for both protocols (see [Server.Addrs]).
	Listen []netip.AddrPort
	// AllowFrom are the client prefixes answered besides loopback and the
	// listen addresses themselves (both always allowed). Optional; anyone
	// else gets REFUSED.
	AllowFrom []netip.Prefix
	// Upstreams get the names outside the mesh domain, tried in order.
	// Optional; with none, such names get REFUSED.
	Upstreams []netip.AddrPort
	// ForwardTimeout is how long each upstream gets. Optional, default
	// [DefaultForwardTimeout].
	ForwardTimeout time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Observe is called once per reply with the query type (0 when there
	// was no question), the reply's rcode and the time taken. Optional; it
	// runs on the query's goroutine, so it must be quick.
	Observe func(qtype uint16, rcode int, took time.Duration)
}

// Server serves DNS for the mesh domain from the current [Table].
type Server struct {
	opts    Options
	log     *slog.Logger
	allow   []netip.Prefix
	table   atomic.Pointer[Table]
	panics  atomic.Uint64
	fwdCtx  context.Context
	fwdStop context.CancelFunc

	mu      sync.Mutex
	started bool
	servers []*dns.Server
	addrs   []netip.AddrPort
	done    sync.WaitGroup
}

// New checks o and returns a server that is not listening yet.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		return nil, errors.New("dnsd: Options.Logger is required")
	}
	if len(o.Listen) == 0 {
		return nil, errors.New("dnsd: Options.Listen is required")
	}
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = DefaultForwardTimeout
	}
	s := &Server{opts: o, log: o.Logger}
	for _, l := range o.Listen {
		if !l.IsValid() {
			return nil, fmt.Errorf("dnsd: listen address %v is not valid", l)
		}
		if !l.Addr().IsUnspecified() {
			a := l.Addr().Unmap().WithZone("")
			s.allow = append(s.allow, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	for _, p := range o.AllowFrom {
		if !p.IsValid() {
			return nil, fmt.Errorf("dnsd: allow_from prefix %v is not valid", p)
		}
		s.allow = append(s.allow, p.Masked())
	}
	for _, u := range o.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return nil, fmt.Errorf("dnsd: upstream %v is not an address and port", u)
		}
		// Forwarding to ourselves would loop every outside name until the
		// timeouts ran out.
		if slices.Contains(o.Listen, u) {
			return nil, fmt.Errorf("dnsd: upstream %v is one of the listen addresses", u)
		}
	}
	s.fwdCtx, s.fwdStop = context.WithCancel(context.Background())
	return s, nil
}

// SetTable swaps in the table that answers from now on. A nil table means
// not ready: every query gets REFUSED until a table arrives.
func (s *Server) SetTable(t *Table) {
	if t != nil {
		t.index() // build it here, not on the first query
	}
	s.table.Store(t)
}

// Panics is how many queries the handler recovered from a panic on.
func (s *Server) Panics() uint64 { return s.panics.Load() }

// Addrs returns the addresses served, in the order of Options.Listen, with
// the ports picked for port 0. Nil before Start.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

// Start binds UDP and TCP on every listen address and serves them. It binds
// everything or nothing: on any error (a port in use, say) it closes what it
// had bound and returns the error.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ErrStarted
	}
	if s.fwdCtx.Err() != nil {
		return ErrClosed
	}

	var (
		pcs   []net.PacketConn
		lns   []net.Listener
		addrs []netip.AddrPort
	)
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, ap := range s.opts.Listen {
		pc, ln, err := listenBoth(ap)
		if err != nil {
			closeAll()
			return fmt.Errorf("dnsd: %w", err)
		}
		pcs, lns = append(pcs, pc), append(lns, ln)
		addrs = append(addrs, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	}

	servers := make([]*dns.Server, 0, 2*len(pcs))
	for i := range pcs {
		servers = append(servers, s.dnsServer(pcs[i], nil), s.dnsServer(nil, lns[i]))
	}
	// Wait until each serves: a Shutdown that came earlier would find it
	// not started and leave it running.
	errs := make(chan error, len(servers))
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			if err := srv.ActivateAndServe(); err != nil {
				select {
				case <-started:
					s.log.Error("dnsd: serving stopped", "addr", srv.Addr, "err", err)
				default:
					errs <- err
				}
			}
		}()
		select {
		case <-started:
		case err := <-errs:
			for _, srv := range servers {
				srv.Shutdown() // those started; the others say "not started"
			}
			closeAll()
			s.done.Wait()
			return fmt.Errorf("dnsd: serve %s: %w", srv.Addr, err)
		}
	}
	s.started, s.servers, s.addrs = true, servers, addrs
	for _, a := range addrs {
		s.log.Debug("dnsd: serving", "addr", a.String())
	}
	return nil
}

// listenBoth binds UDP and TCP on the same address and port. For port 0 it
// takes the port UDP got for TCP too, and tries again with a new one if that
// is taken for TCP.
func listenBoth(ap netip.AddrPort) (net.PacketConn, net.Listener, error) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	network := func(proto string) string {
		if ap.Addr().Is4() {
			return proto + "4"
		}
		return proto + "6"
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenUDP(network("udp"), net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		ln, err := net.ListenTCP(network("tcp"), net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), port)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if ap.Port() != 0 || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

func (s *Server) dnsServer(pc net.PacketConn, ln net.Listener) *dns.Server {
	srv := &dns.Server{
		PacketConn: pc,
		Listener:   ln,
		Handler:    s,
		UDPSize:    maxUDPSize,
		// Everything but responses reaches ServeDNS, which answers malformed
		// queries itself (and counts them); responses are dropped so that
		// two servers never bounce errors at each other.
		MsgAcceptFunc: func(dh dns.Header) dns.MsgAcceptAction {
			if dh.Bits&(1<<15) != 0 { // QR
				return dns.MsgIgnore
			}
			return dns.MsgAccept
		},
		MsgInvalidFunc: func([]byte, error) { s.observe(0, dns.RcodeFormatError, 0) },
	}
	if pc != nil {
		srv.Addr, srv.Net = pc.LocalAddr().String(), "udp"
	} else {
		srv.Addr, srv.Net = ln.Addr().String(), "tcp"
	}
	return srv
}

// Shutdown stops serving and waits, until ctx ends, for the queries in
// flight. Forwarded queries still waiting for an upstream are cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers, s.started = nil, false
	s.mu.Unlock()

	s.fwdStop()
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dnsd: shutdown %s %s: %w", srv.Net, srv.Addr, err))
		}
	}
	waited := make(chan struct{})
	go func() { s.done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("dnsd: shutdown: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// ServeDNS answers one query; it never panics. See the package doc for what
// it answers and how.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if req == nil {
		return
	}
	start := time.Now()
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	written := false
	defer func() {
		if p := recover(); p != nil {
			s.panics.Add(1)
			s.log.Error("dnsd: recovered from a panic in the handler", "err", fmt.Errorf("%v", p), "stack", string(debug.Stack()))
			if !written {
				m := new(dns.Msg)
				m.Id, m.Response, m.Rcode = req.Id, true, dns.RcodeServerFailure
				w.WriteMsg(m)
				s.observe(qtype, dns.RcodeServerFailure, time.Since(start))
			}
		}
	}()

	m := s.respond(w, req)
	written = true
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dnsd: write reply", "remote", addrString(w.RemoteAddr()), "err", err)
	}
	s.observe(qtype, m.Rcode, time.Since(start))
}

func (s *Server) observe(qtype uint16, rcode int, took time.Duration) {
	if s.opts.Observe != nil {
		s.opts.Observe(qtype, rcode, took)
	}
}

// respond builds the reply to req, sized for the transport it came on.
func (s *Server) respond(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	// EDNS0 (RFC 6891): one OPT at most, version 0 only.
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return reply(req, dns.RcodeFormatError)
			}
			opt = o
		}
	}
	size := dns.MinMsgSize
	switch {
	case isTCP(w):
		size = dns.MaxMsgSize
	case opt != nil:
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
	}

	m := s.answer(w, req, opt)
	if opt != nil && m.IsEdns0() == nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	fit(m, size)
	return m
}

// answer builds the reply to req without regard to its size.
func (s *Server) answer(w dns.ResponseWriter, req *dns.Msg, opt *dns.OPT) *dns.Msg {
	if !s.allowed(remoteAddr(w.RemoteAddr())) {
		return reply(req, dns.RcodeRefused)
	}
	if rc := checkQuery(req); rc != dns.RcodeSuccess {
		return reply(req, rc)
	}
	if opt != nil && opt.Version() != 0 {
		return reply(req, dns.RcodeBadVers) // respond adds the OPT that carries it
	}
	t := s.table.Load()
	if t == nil {
		return reply(req, dns.RcodeRefused)
	}
	if t.Owns(req.Question[0].Name) {
		m := Answer(t, req)
		// Clients mostly take the first address: spread them over instances.
		rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
		m.RecursionAvailable = len(s.opts.Upstreams) > 0
		return m
	}
	if len(s.opts.Upstreams) > 0 {
		return s.forward(req, isTCP(w))
	}
	return reply(req, dns.RcodeRefused)
}

// fit makes m fit in size bytes. Additional records go first, without the
// TC bit (RFC 2181 §9: they are not needed); then answers, with it, so the
// client asks again over TCP.
func fit(m *dns.Msg, size int) {
	m.Compress = true
	if m.Len() <= size {
		return
	}
	var keep []dns.RR
	for _, rr := range m.Extra {
		switch rr.(type) {
		case *dns.OPT, *dns.TSIG:
			keep = append(keep, rr)
		}
	}
	m.Extra = keep
	if m.Len() <= size {
		return
	}
	m.Truncate(size)
	m.Compress = true
}

// forward asks the upstreams in order, over the transport the query came
// on, and returns the first answer as it is but for the ID. A reply of any
// rcode counts as an answer; only a failure to get one moves on.
func (s *Server) forward(req *dns.Msg, tcp bool) *dns.Msg {
	c := &dns.Client{Net: "udp", Timeout: s.opts.ForwardTimeout}
	if tcp {
		c.Net = "tcp"
	}
	q := req.Copy()
	for _, up := range s.opts.Upstreams {
		q.Id = dns.Id() // a fresh ID per upstream: an answer late from one is no answer from the next
		ctx, cancel := context.WithTimeout(s.fwdCtx, s.opts.ForwardTimeout)
		r, _, err := c.ExchangeContext(ctx, q, up.String())
		cancel()
		if err != nil {
			s.log.Debug("dnsd: upstream failed", "addr", up.String(), "err", err)
			continue
		}
		r.Id = req.Id
		return r
	}
	return reply(req, dns.RcodeServerFailure)
}

// allowed reports whether a client may ask at all.
func (s *Server) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	if a.IsLoopback() {
		return true
	}
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr()
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

func isTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
