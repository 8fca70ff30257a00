package dnsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
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
	// loopback is whether loopback clients are allowed without AllowFrom:
	// always, but in the test that needs a loopback client (127.0.0.3)
	// that is not.
	loopback bool

	mu      sync.Mutex
	started bool
	servers []*dns.Server  // TCP, and UDP on unspecified addresses
	conns   []*net.UDPConn // UDP that serveUDP serves
	addrs   []netip.AddrPort
	done    sync.WaitGroup // the servers, serveUDP's readers and forwards they started
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
	s := &Server{opts: o, log: o.Logger, loopback: true}
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

	// UDP on a specific address is served by weft's own readers (serveUDP);
	// on an unspecified one (0.0.0.0, ::) a reply must leave from the
	// address the query came to, which takes IP_PKTINFO: miekg/dns's
	// server does that. TCP is always miekg/dns's.
	var (
		servers []*dns.Server
		conns   []*net.UDPConn
	)
	for i, pc := range pcs {
		if conn, ok := pc.(*net.UDPConn); ok && !addrs[i].Addr().IsUnspecified() {
			conns = append(conns, conn)
		} else {
			servers = append(servers, s.dnsServer(pc, nil))
		}
		servers = append(servers, s.dnsServer(nil, lns[i]))
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
	// Readers cannot fail to start: the sockets are bound already.
	for _, conn := range conns {
		for range udpReaders() {
			s.done.Add(1)
			go s.serveUDP(conn)
		}
	}
	s.started, s.servers, s.conns, s.addrs = true, servers, conns, addrs
	for _, a := range addrs {
		s.log.Debug("dnsd: serving", "addr", a.String())
	}
	return nil
}

// udpReaders is how many goroutines read each UDP socket. Each answers what
// it read before it reads again, so one would leave the socket unread while
// it answers; more than the CPUs would only queue on the socket.
func udpReaders() int { return max(runtime.GOMAXPROCS(0), 2) }

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
	servers, conns := s.servers, s.conns
	s.servers, s.conns, s.started = nil, nil, false
	s.mu.Unlock()

	s.fwdStop()
	var errs []error
	// Closing a socket ends its readers' ReadFrom; a reader that was
	// answering finds its write failing and stops at its next read.
	for _, conn := range conns {
		if err := conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dnsd: shutdown udp %s: %w", conn.LocalAddr(), err))
		}
	}
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
// it answers and how. It serves TCP, and UDP on unspecified addresses; the
// UDP readers (serveUDP) share everything but the socket with it.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if req == nil {
		return
	}
	x := newPending(req)
	defer s.recoverPanic(&x, w.Write)

	tcp := isTCP(w)
	m, size := s.handle(req, remoteAddr(w.RemoteAddr()), tcp)
	if m == nil {
		m, size = s.forwarded(req, tcp)
	}
	bp := packBufs.Get().(*[]byte)
	defer packBufs.Put(bp)
	s.send(&x, m, size, *bp, w.Write)
}

// serveUDP reads queries from conn and answers each, until conn is closed.
// It does what dns.Server does for ServeDNS, less what a socket bound to
// one address does not need: no IP_PKTINFO to parse on every read and to
// send with every reply (the reply leaves from the bound address, which is
// the one the query came to), and no goroutine per query. Buffers are the
// reader's own, reused for every query.
func (s *Server) serveUDP(conn *net.UDPConn) {
	defer s.done.Done()
	in := make([]byte, maxUDPSize) // as dns.Server reads: a longer query arrives cut and gets FORMERR
	out := make([]byte, packBufSize)
	var backoff time.Duration
	for {
		n, src, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Not seen on Linux for UDP, but if one repeats, do not spin on it.
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			s.log.Error("dnsd: read", "addr", conn.LocalAddr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.servePacket(conn, in[:n], src, out)
	}
}

// servePacket answers one datagram. The query is unpacked here, not by
// dns.Server, so what its MsgAcceptFunc and MsgInvalidFunc do is done here
// too: responses are dropped, so that two servers never bounce errors at
// each other; what does not unpack gets FORMERR, but not a header too
// short to answer.
func (s *Server) servePacket(conn *net.UDPConn, pkt []byte, src netip.AddrPort, out []byte) {
	send := func(b []byte) (int, error) { return conn.WriteToUDPAddrPort(b, src) }
	x := pending{start: time.Now()}
	defer s.recoverPanic(&x, send) // from miekg/dns's Unpack too: a reader is not to die
	if len(pkt) < 12 {
		s.observe(0, dns.RcodeFormatError, 0)
		return
	}
	if pkt[2]&0x80 != 0 { // QR
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		s.observe(0, dns.RcodeFormatError, 0)
		m := &dns.Msg{MsgHdr: dns.MsgHdr{
			Id:       uint16(pkt[0])<<8 | uint16(pkt[1]),
			Response: true,
			Opcode:   int(pkt[2]>>3) & 0xf,
			Rcode:    dns.RcodeFormatError,
		}}
		if b, err := m.PackBuffer(out); err == nil {
			send(b)
		}
		return
	}

	x.query(req)
	m, size := s.handle(req, src.Addr(), false)
	if m == nil {
		// Upstreams take milliseconds to seconds: not on a reader, which
		// would leave the mesh's own names unanswered meanwhile.
		s.done.Add(1) // this reader is counted, so Shutdown's Wait has not returned
		go s.forwardUDP(conn, x, src)
		return
	}
	s.send(&x, m, size, out, send)
}

// forwardUDP answers a query that serveUDP read from src and that goes to
// the upstreams.
func (s *Server) forwardUDP(conn *net.UDPConn, x pending, src netip.AddrPort) {
	defer s.done.Done()
	send := func(b []byte) (int, error) { return conn.WriteToUDPAddrPort(b, src) }
	defer s.recoverPanic(&x, send)
	m, size := s.forwarded(x.req, false)
	s.send(&x, m, size, nil, send)
}

// pending is one query being answered.
type pending struct {
	req   *dns.Msg // nil until unpacked
	qtype uint16
	start time.Time
	sent  bool // a reply went out (or failed to): none is due after a panic
}

func newPending(req *dns.Msg) pending {
	x := pending{start: time.Now()}
	x.query(req)
	return x
}

func (x *pending) query(req *dns.Msg) {
	x.req = req
	if len(req.Question) > 0 {
		x.qtype = req.Question[0].Qtype
	}
}

// recoverPanic, deferred, answers SERVFAIL when the handler panicked before
// it sent a reply, and counts the panic.
func (s *Server) recoverPanic(x *pending, send func([]byte) (int, error)) {
	p := recover()
	if p == nil {
		return
	}
	s.panics.Add(1)
	s.log.Error("dnsd: recovered from a panic in the handler", "err", fmt.Errorf("%v", p), "stack", string(debug.Stack()))
	if x.sent || x.req == nil {
		return
	}
	x.sent = true
	m := new(dns.Msg)
	m.Id, m.Response, m.Rcode = x.req.Id, true, dns.RcodeServerFailure
	if b, err := m.Pack(); err == nil {
		send(b)
	}
	s.observe(x.qtype, dns.RcodeServerFailure, time.Since(x.start))
}

// send packs m to fit size (into buf when it is large enough) and sends it
// with write. A reply that does not pack becomes SERVFAIL: the client gets
// an answer.
func (s *Server) send(x *pending, m *dns.Msg, size int, buf []byte, write func([]byte) (int, error)) {
	b, err := packFit(m, size, buf)
	if err != nil {
		s.log.Debug("dnsd: pack reply", "name", questionName(x.req), "err", err)
		m = reply(x.req, dns.RcodeServerFailure)
		if b, err = m.PackBuffer(buf); err != nil {
			return
		}
	}
	x.sent = true
	if _, err := write(b); err != nil {
		s.log.Debug("dnsd: write reply", "name", questionName(x.req), "err", err)
	}
	s.observe(x.qtype, m.Rcode, time.Since(x.start))
}

func questionName(req *dns.Msg) string {
	if len(req.Question) == 0 {
		return ""
	}
	return req.Question[0].Name
}

func (s *Server) observe(qtype uint16, rcode int, took time.Duration) {
	if s.opts.Observe != nil {
		s.opts.Observe(qtype, rcode, took)
	}
}

// handle builds the reply to req, which came from src over TCP or UDP, and
// says how many bytes it may take on the wire (packFit makes it fit). It is
// the core of both transports. A nil reply means that req goes to the
// upstreams: the caller calls forwarded, which may take seconds.
func (s *Server) handle(req *dns.Msg, src netip.Addr, tcp bool) (*dns.Msg, int) {
	opt, several := edns(req)
	size := replySize(opt, tcp)
	var m *dns.Msg
	if several {
		m = reply(req, dns.RcodeFormatError)
	} else if m = s.answer(req, src, opt); m == nil {
		return nil, size
	}
	withEDNS(m, opt)
	return m, size
}

// forwarded is handle's reply for a query that goes upstream.
func (s *Server) forwarded(req *dns.Msg, tcp bool) (*dns.Msg, int) {
	opt, _ := edns(req)
	m := s.forward(req, tcp)
	withEDNS(m, opt)
	return m, replySize(opt, tcp)
}

// edns returns the query's OPT (RFC 6891), and whether it has several,
// which is FORMERR.
func edns(req *dns.Msg) (opt *dns.OPT, several bool) {
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return opt, true
			}
			opt = o
		}
	}
	return opt, false
}

// replySize is the largest reply the client takes: what its OPT says, at
// least 512 and at most ours, or 512 without one; over TCP, any.
func replySize(opt *dns.OPT, tcp bool) int {
	switch {
	case tcp:
		return dns.MaxMsgSize
	case opt != nil:
		return min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
	}
	return dns.MinMsgSize
}

// withEDNS adds our OPT to the reply of a query that had one.
func withEDNS(m *dns.Msg, opt *dns.OPT) {
	if opt != nil && m.IsEdns0() == nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
}

// answer builds the reply to req without regard to its size; nil when req
// goes to the upstreams.
func (s *Server) answer(req *dns.Msg, src netip.Addr, opt *dns.OPT) *dns.Msg {
	if !s.allowed(src) {
		return reply(req, dns.RcodeRefused)
	}
	if rc := checkQuery(req); rc != dns.RcodeSuccess {
		return reply(req, rc)
	}
	if opt != nil && opt.Version() != 0 {
		return reply(req, dns.RcodeBadVers) // withEDNS adds the OPT that carries it
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
		return nil
	}
	return reply(req, dns.RcodeRefused)
}

// packBufSize fits every UDP reply (at most maxUDPSize compressed) but
// for big answers, whose uncompressed form, which PackBuffer needs room
// for, is larger: those allocate.
const packBufSize = 2 * maxUDPSize

// packBufs are for ServeDNS; serveUDP's readers have their own.
var packBufs = sync.Pool{New: func() any { b := make([]byte, packBufSize); return &b }}

// packFit packs m, compressed, into at most size bytes, using buf when it is
// large enough. When m does not fit, additional records go first, without
// the TC bit (RFC 2181 §9: they are not needed); then answers, with it, so
// the client asks again over TCP. m is changed accordingly. Most replies fit
// and are packed once.
func packFit(m *dns.Msg, size int, buf []byte) ([]byte, error) {
	m.Compress = true
	b, err := m.PackBuffer(buf)
	if err != nil || len(b) <= size {
		return b, err
	}
	keep := m.Extra[:0:0]
	for _, rr := range m.Extra {
		switch rr.(type) {
		case *dns.OPT, *dns.TSIG:
			keep = append(keep, rr)
		}
	}
	if len(keep) < len(m.Extra) {
		m.Extra = keep
		if b, err = m.PackBuffer(buf); err != nil || len(b) <= size {
			return b, err
		}
	}
	m.Truncate(size)
	m.Compress = true
	if b, err = m.PackBuffer(buf); err != nil || len(b) <= size {
		return b, err
	}
	// Truncate measures as PackBuffer packs, so this is not expected; but a
	// UDP reply larger than the client takes is lost, so keep only the
	// header, the question and the OPT.
	m.Answer, m.Ns, m.Extra = nil, nil, keep
	m.Truncated = true
	return m.PackBuffer(buf)
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
		r, err := exchangeContext(ctx, c, q, up)
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

// exchangeContext is c.ExchangeContext, but stops when ctx is cancelled
// (Shutdown), not only at its deadline, which is all miekg/dns looks at.
func exchangeContext(ctx context.Context, c *dns.Client, q *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	conn, err := c.DialContext(ctx, up.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	return r, err
}

// allowed reports whether a client may ask at all.
func (s *Server) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	if a.IsLoopback() && s.loopback {
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
