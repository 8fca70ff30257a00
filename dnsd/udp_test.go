package dnsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests are about serveUDP, the readers that serve UDP on a specific
// address; TestServeUDPAndTCP and the others reach it too.

// dialFrom returns a UDP client conn from the loopback address from to addr.
func dialFrom(t *testing.T, from, addr string) *dns.Conn {
	t.Helper()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0)),
		net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}
}

func exchangeOn(t *testing.T, conn *dns.Conn, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.ExchangeWithConn(m, conn)
	if err != nil {
		t.Fatalf("query %s from %s: %v", m.Question[0].Name, conn.LocalAddr(), err)
	}
	return r
}

func TestUDPAccessControl(t *testing.T) {
	s := newServer(t, Options{AllowFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	// Loopback is always allowed, so 127.0.0.3 could not show a client
	// that is not; here it is not, as 10.1.2.3 would not be.
	s.loopback = false
	_, addr := serve(t, s, fixture())

	tests := []struct {
		from  string
		rcode int
	}{
		{"127.0.0.2", dns.RcodeSuccess}, // allow_from
		{"127.0.0.1", dns.RcodeSuccess}, // the listen address itself
		{"127.0.0.3", dns.RcodeRefused}, // anyone else
	}
	for _, tt := range tests {
		r := exchangeOn(t, dialFrom(t, tt.from, addr), query("alpha.node.weft.internal.", dns.TypeA))
		if r.Rcode != tt.rcode {
			t.Errorf("from %s: rcode %s, want %s", tt.from, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
		}
		if tt.rcode == dns.RcodeRefused && len(r.Answer) != 0 {
			t.Errorf("from %s: refused with %d answers", tt.from, len(r.Answer))
		}
		if tt.rcode == dns.RcodeSuccess && len(r.Answer) != 1 {
			t.Errorf("from %s: %d answers, want 1", tt.from, len(r.Answer))
		}
	}
}

func TestUDPTruncates(t *testing.T) {
	_, addr := startServer(t, Options{}, bigService(60))
	// 60 SRV records and their addresses take about 2,800 bytes.
	for _, size := range []uint16{0, 1232, 4096} { // 0: no EDNS0, so 512
		q := query("_big._tcp.service.weft.internal.", dns.TypeSRV)
		limit := dns.MinMsgSize
		if size > 0 {
			q.SetEdns0(size, false)
			limit = int(size)
		}
		conn := dialFrom(t, "127.0.0.1", addr)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		raw := make([]byte, 65535)
		n, err := conn.Read(raw)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if n > limit {
			t.Errorf("size %d: a reply of %d bytes", size, n)
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw[:n]); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if size == 4096 {
			if r.Truncated || len(r.Answer) != 60 || len(r.Extra) != 61 { // 60 A + OPT
				t.Errorf("size %d: TC %v, %d answers, %d additional; want the whole answer", size, r.Truncated, len(r.Answer), len(r.Extra))
			}
		} else if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 60 {
			t.Errorf("size %d: TC %v with %d answers, want TC and as many as fit", size, r.Truncated, len(r.Answer))
		}
		if (size > 0) != (r.IsEdns0() != nil) {
			t.Errorf("size %d: OPT in the reply %v", size, r.IsEdns0())
		}
	}
}

func TestUDPMalformed(t *testing.T) {
	type obs struct {
		qtype uint16
		rcode int
	}
	seen := make(chan obs, 10)
	s := newServer(t, Options{Observe: func(qtype uint16, rcode int, took time.Duration) { seen <- obs{qtype, rcode} }})
	_, addr := serve(t, s, fixture())
	conn := dialFrom(t, "127.0.0.1", addr)
	raw := make([]byte, 65535)
	read := func() (*dns.Msg, error) {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(raw)
		if err != nil {
			return nil, err
		}
		r := new(dns.Msg)
		return r, r.Unpack(raw[:n])
	}

	// A question whose name is cut short: FORMERR.
	conn.Write([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'})
	r, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if r.Id != 0x1234 || !r.Response || r.Rcode != dns.RcodeFormatError {
		t.Errorf("reply to a cut query: id %#x response %v rcode %s; want FORMERR", r.Id, r.Response, dns.RcodeToString[r.Rcode])
	}
	select {
	case got := <-seen:
		if got != (obs{0, dns.RcodeFormatError}) {
			t.Errorf("observed %v, want FORMERR of type 0", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("the cut query was not observed")
	}

	// Neither a header too short nor a response gets a reply. The query
	// after them does, and is the only reply.
	conn.Write([]byte{1, 2, 3})
	resp := query("alpha.node.weft.internal.", dns.TypeA)
	resp.Response = true
	b, _ := resp.Pack()
	conn.Write(b)
	q := query("alpha.node.weft.internal.", dns.TypeA)
	b, _ = q.Pack()
	conn.Write(b)
	if r, err = read(); err != nil || r.Id != q.Id || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("reply %v, %v; want the answer to the query", r, err)
	}
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := conn.Read(raw); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a second reply (%d bytes, %v): a short header or a response was answered", n, err)
	}
}

// TestUnspecifiedListen covers UDP on 0.0.0.0, which dns.Server serves: the
// client's connected socket drops a reply from another source address.
func TestUnspecifiedListen(t *testing.T) {
	s := newServer(t, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}})
	_, addr := serve(t, s, fixture())
	port := netip.MustParseAddrPort(addr).Port()
	lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(t, network, lo, query("alpha.node.weft.internal.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s: rcode %s with %d answers", network, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
}

func TestUDPShutdown(t *testing.T) {
	before := runtime.NumGoroutine()

	// An upstream that reads queries and never answers, so that a forward
	// is in flight when the server shuts down.
	dead, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := newServer(t, Options{
		Listen:         []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:0")},
		Upstreams:      []netip.AddrPort{dead.LocalAddr().(*net.UDPAddr).AddrPort()},
		ForwardTimeout: time.Minute,
	})
	s.SetTable(fixture())
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	for _, a := range addrs {
		exchange(t, "udp", a.String(), query("alpha.node.weft.internal.", dns.TypeA))
	}
	conn := dialFrom(t, "127.0.0.1", addrs[0].String())
	if err := conn.WriteMsg(query("example.org.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	dead.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := dead.ReadFrom(make([]byte, 512)); err != nil {
		t.Fatalf("the query never reached the upstream: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Errorf("UDP %v still bound after Shutdown: %v", a, err)
			continue
		}
		pc.Close()
	}
	conn.Close()
	dead.Close()

	// Shutdown waited for the readers and the forward; what may be left
	// ends on its own (the forward's context.AfterFunc).
	eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, func() string {
		var sb strings.Builder
		pprof.Lookup("goroutine").WriteTo(&sb, 1)
		return fmt.Sprintf("%d goroutines after Shutdown, %d before:\n%s", runtime.NumGoroutine(), before, sb.String())
	})
}

func TestUDPPanic(t *testing.T) {
	s := newServer(t, Options{Observe: func(qtype uint16, rcode int, took time.Duration) {
		if qtype == dns.TypeTXT {
			panic("planted panic")
		}
	}})
	_, addr := serve(t, s, fixture())
	conn := dialFrom(t, "127.0.0.1", addr)
	// The panic comes after the reply went out: no second one.
	if r := exchangeOn(t, conn, query("alpha.node.weft.internal.", dns.TypeTXT)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	// Every reader still reads.
	for range 2 * udpReaders() {
		if r := exchangeOn(t, conn, query("alpha.node.weft.internal.", dns.TypeA)); len(r.Answer) != 1 {
			t.Errorf("after a panic: %d answers", len(r.Answer))
		}
	}
	if s.Panics() != 1 {
		t.Errorf("Panics = %d, want 1", s.Panics())
	}
}
