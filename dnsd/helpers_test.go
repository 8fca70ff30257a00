package dnsd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fixture is the table most tests ask: IPv4-only, dual-stack and IPv6-only
// nodes, a tagged service on two of them, one on the IPv6 node, and a known
// service with no healthy instance.
func fixture() *Table {
	return NewTable("weft.internal", 30*time.Second,
		map[string][]netip.Addr{
			"alpha":  {netip.MustParseAddr("10.90.1.1")},
			"beta":   {netip.MustParseAddr("10.90.1.2"), netip.MustParseAddr("fd00::2")},
			"gamma6": {netip.MustParseAddr("fd00::3")},
		},
		map[string][]Instance{
			"web": {
				{Node: "alpha", Addr: netip.MustParseAddr("10.90.1.1"), Port: 8080, Tags: []string{"v1", "Primary"}},
				{Node: "beta", Addr: netip.MustParseAddr("10.90.1.2"), Port: 8080, Tags: []string{"v2"}},
			},
			"db":   {{Node: "gamma6", Addr: netip.MustParseAddr("fd00::3"), Port: 5432}},
			"idle": {},
		})
}

// query is a query as a stub resolver sends it.
func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// rrs renders records one per string, for go-cmp.
func rrs(list []dns.RR) []string {
	var out []string
	for _, rr := range list {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

// fakeWriter is a dns.ResponseWriter that keeps the reply.
type fakeWriter struct {
	remote      net.Addr
	msg         *dns.Msg
	writes      int
	panicRemote bool
}

func udpFrom(addr string) *fakeWriter {
	return &fakeWriter{remote: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))}
}

func tcpFrom(addr string) *fakeWriter {
	return &fakeWriter{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))}
}

func (w *fakeWriter) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:8600"))
}

func (w *fakeWriter) RemoteAddr() net.Addr {
	if w.panicRemote {
		panic("planted panic")
	}
	return w.remote
}

func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	w.msg = m
	w.writes++
	return nil
}

func (w *fakeWriter) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	return len(b), w.WriteMsg(m)
}

func (w *fakeWriter) Close() error        { return nil }
func (w *fakeWriter) TsigStatus() error   { return nil }
func (w *fakeWriter) TsigTimersOnly(bool) {}
func (w *fakeWriter) Hijack()             {}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newServer returns a server that is not started, for calling ServeDNS.
func newServer(t testing.TB, o Options) *Server {
	t.Helper()
	if len(o.Listen) == 0 {
		o.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts a server on a free loopback port and stops it when the
// test ends.
func startServer(t testing.TB, o Options, tbl *Table) (*Server, string) {
	t.Helper()
	return serve(t, newServer(t, o), tbl)
}

// serve starts s with tbl and stops it when the test ends.
func serve(t testing.TB, s *Server, tbl *Table) (*Server, string) {
	t.Helper()
	s.SetTable(tbl)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, s.Addrs()[0].String()
}

// eventually polls cond until it holds or timeout passes, and then fails
// with what last says.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, last func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, last())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
