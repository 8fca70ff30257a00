package dnsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func exchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s: %v", network, m.Question[0].Name, err)
	}
	return r
}

func TestServeUDPAndTCP(t *testing.T) {
	_, addr := startServer(t, Options{}, fixture())
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, addr, query("alpha.node.weft.internal.", dns.TypeA))
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Errorf("%s: rcode %s, AA %v", network, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if diff := cmp.Diff([]string{"alpha.node.weft.internal. 30 IN A 10.90.1.1"}, rrs(r.Answer)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", network, diff)
		}
		if r.RecursionAvailable {
			t.Errorf("%s: RA set without upstreams", network)
		}
	}
}

// bigService is a table with one service of n instances, each on its own node.
func bigService(n int) *Table {
	nodes := map[string][]netip.Addr{}
	var insts []Instance
	for i := range n {
		name := fmt.Sprintf("node-%03d", i)
		addr := netip.AddrFrom4([4]byte{10, 90, byte(i / 250), byte(1 + i%250)})
		nodes[name] = []netip.Addr{addr}
		insts = append(insts, Instance{Node: name, Addr: addr, Port: 9000 + i})
	}
	return NewTable("weft.internal", 30*time.Second, nodes, map[string][]Instance{"big": insts})
}

func TestTruncationAndTCP(t *testing.T) {
	_, addr := startServer(t, Options{}, bigService(60))
	q := query("_big._tcp.service.weft.internal.", dns.TypeSRV)
	q.SetEdns0(1232, false)

	r := exchange(t, "udp", addr, q)
	if !r.Truncated {
		t.Errorf("UDP: TC not set for %d answers", len(r.Answer))
	}
	if len(r.Answer) >= 60 {
		t.Errorf("UDP: %d answers in a 1232-byte reply", len(r.Answer))
	}
	if r.IsEdns0() == nil {
		t.Error("UDP: no OPT in the reply to a query with one")
	}
	if r.Compress = true; r.Len() > 1232 {
		t.Errorf("UDP reply is %d bytes, client offered 1232", r.Len())
	}

	r = exchange(t, "tcp", addr, q)
	if r.Truncated || len(r.Answer) != 60 || len(r.Extra) != 61 { // 60 A + OPT
		t.Errorf("TCP: TC %v, %d answers, %d additional; want the whole answer", r.Truncated, len(r.Answer), len(r.Extra))
	}
}

func TestNoEDNSMeans512(t *testing.T) {
	_, addr := startServer(t, Options{}, bigService(60))
	r := exchange(t, "udp", addr, query("big.service.weft.internal.", dns.TypeA))
	if !r.Truncated || r.IsEdns0() != nil {
		t.Errorf("TC %v, OPT %v: want TC and no OPT", r.Truncated, r.IsEdns0())
	}
}

func TestFitDropsAdditionalFirst(t *testing.T) {
	tbl := bigService(9) // 9 SRV answers fit in 512 bytes, their 9 addresses do not
	m := Answer(tbl, query("_big._tcp.service.weft.internal.", dns.TypeSRV))
	m.SetEdns0(maxUDPSize, false)
	if m.Compress = true; m.Len() <= dns.MinMsgSize {
		t.Fatalf("fixture too small: %d bytes", m.Len())
	}
	if _, err := packFit(m, dns.MinMsgSize, nil); err != nil {
		t.Fatal(err)
	}
	if m.Truncated || len(m.Answer) != 9 {
		t.Errorf("TC %v with %d answers: dropping additional records alone should fit", m.Truncated, len(m.Answer))
	}
	if len(m.Extra) != 1 || m.IsEdns0() == nil {
		t.Errorf("additional = %v, want only the OPT", m.Extra)
	}
	if b, err := m.Pack(); err != nil || len(b) > dns.MinMsgSize {
		t.Errorf("packed %d bytes, err %v", len(b), err)
	}
}

func TestEDNS(t *testing.T) {
	s := newServer(t, Options{})
	s.SetTable(fixture())

	q := query("alpha.node.weft.internal.", dns.TypeA)
	q.SetEdns0(100, true) // below 512 counts as 512
	w := udpFrom("127.0.0.1:5353")
	s.ServeDNS(w, q)
	opt := w.msg.IsEdns0()
	if opt == nil || opt.UDPSize() != maxUDPSize || !opt.Do() || opt.Version() != 0 {
		t.Errorf("OPT %v: want ours (size %d), DO echoed", opt, maxUDPSize)
	}

	q = query("alpha.node.weft.internal.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(1)
	w = udpFrom("127.0.0.1:5353")
	s.ServeDNS(w, q)
	if w.msg.Rcode != dns.RcodeBadVers || w.msg.IsEdns0() == nil {
		t.Errorf("EDNS version 1: rcode %s, OPT %v; want BADVERS with OPT", dns.RcodeToString[w.msg.Rcode], w.msg.IsEdns0())
	}
	if _, err := w.msg.Pack(); err != nil {
		t.Errorf("BADVERS reply does not pack: %v", err)
	}

	q = query("alpha.node.weft.internal.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.Extra = append(q.Extra, q.Extra[0])
	w = udpFrom("127.0.0.1:5353")
	s.ServeDNS(w, q)
	if w.msg.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT: rcode %s, want FORMERR", dns.RcodeToString[w.msg.Rcode])
	}
}

func TestOutsideDomainRefusedWithoutUpstreams(t *testing.T) {
	_, addr := startServer(t, Options{}, fixture())
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, addr, query("example.org.", dns.TypeA))
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s: rcode %s with %d answers, want REFUSED", network, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
}

// upstream starts a plain miekg/dns server on loopback UDP that knows one
// name, and returns its address.
func upstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "example.org." && r.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)}}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestForward(t *testing.T) {
	// The first upstream never answers: the second one must.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	up := upstream(t)
	_, addr := startServer(t, Options{
		Upstreams:      []netip.AddrPort{dead.LocalAddr().(*net.UDPAddr).AddrPort(), up},
		ForwardTimeout: 200 * time.Millisecond,
	}, fixture())

	q := query("example.org.", dns.TypeA)
	r := exchange(t, "udp", addr, q) // dns.Client rejects a reply whose ID differs
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if diff := cmp.Diff([]string{"example.org. 300 IN A 192.0.2.1"}, rrs(r.Answer)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if r = exchange(t, "udp", addr, query("nope.example.org.", dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Errorf("upstream NXDOMAIN came back as %s", dns.RcodeToString[r.Rcode])
	}
	// Mesh names never go upstream, and say that recursion is available.
	r = exchange(t, "udp", addr, query("nope.node.weft.internal.", dns.TypeA))
	if r.Rcode != dns.RcodeNameError || !r.Authoritative || !r.RecursionAvailable {
		t.Errorf("mesh name: rcode %s AA %v RA %v", dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
	}
}

func TestForwardAllUpstreamsDown(t *testing.T) {
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := newServer(t, Options{Upstreams: []netip.AddrPort{dead.LocalAddr().(*net.UDPAddr).AddrPort()}, ForwardTimeout: 50 * time.Millisecond})
	s.SetTable(fixture())
	w := udpFrom("127.0.0.1:5353")
	s.ServeDNS(w, query("example.org.", dns.TypeA))
	if w.msg.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[w.msg.Rcode])
	}
}

func TestAccessControl(t *testing.T) {
	tests := []struct {
		name   string
		allow  []netip.Prefix
		writer *fakeWriter
		rcode  int
	}{
		{"outside is refused", nil, udpFrom("10.1.2.3:5353"), dns.RcodeRefused},
		{"outside over TCP is refused", nil, tcpFrom("10.1.2.3:5353"), dns.RcodeRefused},
		{"allow_from admits", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, udpFrom("10.1.2.3:5353"), dns.RcodeSuccess},
		{"allow_from is exact", []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, udpFrom("10.1.2.3:5353"), dns.RcodeRefused},
		{"loopback v4", nil, udpFrom("127.0.0.1:5353"), dns.RcodeSuccess},
		{"loopback v6", nil, udpFrom("[::1]:5353"), dns.RcodeSuccess},
		{"mapped loopback", nil, udpFrom("[::ffff:127.0.0.1]:5353"), dns.RcodeSuccess},
		{"the listen address itself", nil, udpFrom("10.90.1.9:5353"), dns.RcodeSuccess},
		{"no address", nil, &fakeWriter{}, dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, Options{
				Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("10.90.1.9:53")},
				AllowFrom: tt.allow,
			})
			s.SetTable(fixture())
			s.ServeDNS(tt.writer, query("alpha.node.weft.internal.", dns.TypeA))
			if tt.writer.writes != 1 {
				t.Fatalf("%d replies written, want 1 (refused, never dropped)", tt.writer.writes)
			}
			if got := tt.writer.msg.Rcode; got != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[got], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode == dns.RcodeRefused && len(tt.writer.msg.Answer) != 0 {
				t.Errorf("refused reply carries %d answers", len(tt.writer.msg.Answer))
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	s, addr := startServer(t, Options{}, nil)
	if r := exchange(t, "udp", addr, query("alpha.node.weft.internal.", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("before any table: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	s.SetTable(fixture())
	if r := exchange(t, "udp", addr, query("alpha.node.weft.internal.", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("with a table: rcode %s", dns.RcodeToString[r.Rcode])
	}
	s.SetTable(nil)
	if r := exchange(t, "tcp", addr, query("alpha.node.weft.internal.", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("after SetTable(nil): rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestMalformedOnTheWire(t *testing.T) {
	_, addr := startServer(t, Options{}, fixture())
	q := query("alpha.node.weft.internal.", dns.TypeA)
	q.Opcode = dns.OpcodeStatus
	if r := exchange(t, "udp", addr, q); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("opcode STATUS: %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	q = query("alpha.node.weft.internal.", dns.TypeA)
	q.Question = append(q.Question, q.Question[0])
	if r := exchange(t, "tcp", addr, q); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

func TestStartAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().(*net.TCPAddr).AddrPort()
	free := freePort(t)

	s := newServer(t, Options{Listen: []netip.AddrPort{free, busyAddr}})
	err = s.Start()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start = %v, want address in use", err)
	}
	t.Logf("Start: %v", err)
	if s.Addrs() != nil {
		t.Errorf("Addrs = %v after a failed start", s.Addrs())
	}
	// Nothing stayed bound: the free port (both protocols) and the busy
	// one's UDP side can be taken again.
	for _, ap := range []netip.AddrPort{free, busyAddr} {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Errorf("UDP %v still bound: %v", ap, err)
			continue
		}
		pc.Close()
	}
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(free))
	if err != nil {
		t.Errorf("TCP %v still bound: %v", free, err)
	} else {
		ln.Close()
	}
}

// freePort returns a loopback address whose port was free for UDP and TCP.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, ln, err := listenBoth(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	ln.Close()
	return ap
}

func TestLifecycle(t *testing.T) {
	s := newServer(t, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("[::1]:0")}})
	s.SetTable(fixture())
	if err := s.Start(); err != nil {
		t.Skipf("no IPv6 loopback? %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0].Port() == 0 || addrs[1].Port() == 0 {
		t.Fatalf("Addrs = %v", addrs)
	}
	exchange(t, "udp", addrs[1].String(), query("alpha.node.weft.internal.", dns.TypeA))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ap := range addrs {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			t.Errorf("%v still bound after Shutdown: %v", ap, err)
			continue
		}
		ln.Close()
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown = %v, want ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	log := testLogger(t)
	lo := netip.MustParseAddrPort("127.0.0.1:8600")
	tests := []struct {
		name string
		o    Options
	}{
		{"no logger", Options{Listen: []netip.AddrPort{lo}}},
		{"no listen", Options{Logger: log}},
		{"invalid listen", Options{Logger: log, Listen: []netip.AddrPort{{}}}},
		{"upstream without port", Options{Logger: log, Listen: []netip.AddrPort{lo}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}}},
		{"upstream is ourselves", Options{Logger: log, Listen: []netip.AddrPort{lo}, Upstreams: []netip.AddrPort{lo}}},
		{"invalid prefix", Options{Logger: log, Listen: []netip.AddrPort{lo}, AllowFrom: []netip.Prefix{{}}}},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

func TestObserveAndPanic(t *testing.T) {
	type obs struct {
		qtype uint16
		rcode int
	}
	var mu sync.Mutex
	var seen []obs
	s := newServer(t, Options{Observe: func(qtype uint16, rcode int, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, obs{qtype, rcode})
	}})
	s.SetTable(fixture())

	s.ServeDNS(udpFrom("127.0.0.1:1"), query("alpha.node.weft.internal.", dns.TypeA))
	s.ServeDNS(udpFrom("127.0.0.1:1"), query("nope.node.weft.internal.", dns.TypeAAAA))
	w := udpFrom("127.0.0.1:1")
	w.panicRemote = true
	s.ServeDNS(w, query("alpha.node.weft.internal.", dns.TypeSRV))

	if w.msg == nil || w.msg.Rcode != dns.RcodeServerFailure {
		t.Errorf("after a panic: reply %v, want SERVFAIL", w.msg)
	}
	if s.Panics() != 1 {
		t.Errorf("Panics = %d, want 1", s.Panics())
	}
	want := []obs{{dns.TypeA, dns.RcodeSuccess}, {dns.TypeAAAA, dns.RcodeNameError}, {dns.TypeSRV, dns.RcodeServerFailure}}
	if diff := cmp.Diff(want, seen, cmp.AllowUnexported(obs{})); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}

func TestShuffleKeepsRecords(t *testing.T) {
	s := newServer(t, Options{})
	s.SetTable(bigService(20))
	w := udpFrom("127.0.0.1:1")
	q := query("big.service.weft.internal.", dns.TypeA)
	q.SetEdns0(4096, false)
	s.ServeDNS(w, q)
	got := rrs(w.msg.Answer)
	slices.Sort(got)
	want := rrs(Answer(bigService(20), query("big.service.weft.internal.", dns.TypeA)).Answer)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
