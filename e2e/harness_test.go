package e2e

// Self-tests of the harness: the bed, the config template, the polling
// helpers and the tlsdial helper. They need no weft binary.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func TestBedPing(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "a", "b")
	other := NewBed(t, "x")
	a, bb, x := b.Host("a"), b.Host("b"), other.Host("x")
	if b.Index == other.Index || a.IP == x.IP {
		t.Fatalf("two beds share index %d / address %v", b.Index, a.IP)
	}

	ping := func(from *Host, to netip.Addr) func() (bool, string) {
		return func() (bool, string) {
			out, err := from.Exec("ping", "-n", "-c", "1", "-W", "1", to.String())
			if err != nil {
				return false, err.Error()
			}
			return true, out
		}
	}
	Eventually(t, 10*time.Second, ping(a, bb.IP))
	Eventually(t, 10*time.Second, ping(bb, a.IP))

	// Must not: leave the bed, to another bed or anywhere else.
	for _, dst := range []netip.Addr{x.IP, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("10.213.255.254")} {
		if out, err := a.Exec("ping", "-n", "-c", "1", "-W", "1", dst.String()); err == nil {
			t.Errorf("a reached %v outside its bed:\n%s", dst, out)
		}
	}
	if out, err := x.Exec("ping", "-n", "-c", "1", "-W", "1", a.IP.String()); err == nil {
		t.Errorf("x (bed %d) reached a (bed %d):\n%s", other.Index, b.Index, out)
	}

	// Each host has exactly lo and eth0, with only its own address.
	out, err := a.Exec("ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		links = append(links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
	}
	slices.Sort(links)
	if diff := cmp.Diff([]string{"eth0", "lo"}, links); diff != "" {
		t.Errorf("links in a (-want +got):\n%s", diff)
	}
	// The root namespace got nothing.
	root, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(root), "10.213.") {
		t.Errorf("root namespace has a bed address:\n%s", root)
	}
}

// TestBedCleanup checks that a bed leaves nothing behind: no namespace, no
// process, no temp dir.
func TestBedCleanup(t *testing.T) {
	t.Parallel()
	needNetns(t)
	var nss, dirs []string
	var sleeper *exec.Cmd
	t.Run("bed", func(t *testing.T) {
		b := NewBed(t, "a", "b")
		nss = b.Namespaces()
		for _, h := range b.Hosts() {
			dirs = append(dirs, h.Dir)
		}
		sleeper = exec.Command("ip", "netns", "exec", b.Host("a").NS, "sleep", "300")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
	})
	if sleeper == nil {
		t.Fatal("subtest did not get to start a process")
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		sleeper.Process.Kill()
		t.Errorf("a process in the bed's namespace survived its cleanup")
	}
	if len(nss) != 3 {
		t.Errorf("namespaces = %v, want underlay + 2 hosts", nss)
	}
	list, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if slices.Contains(strings.Fields(string(list)), ns) {
			t.Errorf("namespace %s survived cleanup", ns)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("dir %s survived cleanup (stat: %v)", d, err)
		}
	}
}

func TestSweepStale(t *testing.T) {
	t.Parallel()
	needNetns(t)
	const deadPid = 1<<22 - 1 // above any default pid_max
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", deadPid)); err == nil {
		t.Skipf("pid %d exists here", deadPid)
	}
	stale := []string{fmt.Sprintf("%s%db0", nsPrefix, deadPid), fmt.Sprintf("%s%db0.s1", nsPrefix, deadPid)}
	live := fmt.Sprintf("%s%db999", nsPrefix, os.Getpid()) // ours; bed indexes stop at 255
	all := append(slices.Clone(stale), live)
	t.Cleanup(func() {
		for _, ns := range all {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range all {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
	}
	tmp := t.TempDir()
	staleDir, liveDir := filepath.Join(tmp, "wf-stale"), filepath.Join(tmp, "wf-live")
	for dir, pid := range map[string]int{staleDir: deadPid, liveDir: os.Getpid()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprint(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sweepStale(tmp)
	if _, err := os.Stat(staleDir); !os.IsNotExist(err) {
		t.Errorf("stale temp dir not swept (stat: %v)", err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("temp dir of this live process was swept: %v", err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(out))
	for _, ns := range stale {
		if slices.Contains(have, ns) {
			t.Errorf("stale namespace %s not swept", ns)
		}
	}
	if !slices.Contains(have, live) {
		t.Errorf("namespace %s of this live process was swept", live)
	}
}

func TestLinkNamesFit(t *testing.T) {
	for _, n := range []string{vethName(1<<22-1, 255, 199), bridgeName(1<<22-1, 255)} {
		if len(n) > 15 {
			t.Errorf("link name %q is %d bytes, the kernel allows 15", n, len(n))
		}
	}
	if pid, ok := nsOwner(nsName(7, "s1")); !ok || pid != os.Getpid() {
		t.Errorf("nsOwner(nsName) = %d, %t; want %d", pid, ok, os.Getpid())
	}
	for _, ns := range []string{"wfe", "wfeb1", "wfex1b2", "other123b1", "wfe-1b0"} {
		if pid, ok := nsOwner(ns); ok {
			t.Errorf("nsOwner(%q) = %d, want no owner", ns, pid)
		}
	}
}

func TestGarble(t *testing.T) {
	for _, tok := range []string{"weft1.abcdef0123.SeCrEt9876543210xyz", "weft1abcdefghijklmnop", "weft1.fp.zzzz9999ZZZZ"} {
		g := garble(tok)
		diff := 0
		for i := range tok {
			if tok[i] != g[i] {
				diff++
				if i < strings.LastIndex(tok, ".")+1 || i < len("weft1") {
					t.Errorf("garble(%q) = %q changed position %d, outside the secret", tok, g, i)
				}
			}
		}
		if len(g) != len(tok) || diff != 1 {
			t.Errorf("garble(%q) = %q, want one character changed", tok, g)
		}
	}
	if got := tokenSecret("weft1.fp.secret"); got != "secret" {
		t.Errorf("tokenSecret = %q", got)
	}
}

// fakeTB records a Fatalf and stops the goroutine, as testing.T does.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runFake(fn func(tb testing.TB)) string {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.fatal
}

func TestEventually(t *testing.T) {
	t.Parallel()
	n := 0
	Eventually(t, 5*time.Second, func() (bool, string) { n++; return n == 3, "" })
	if n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}

	n = 0
	msg := runFake(func(tb testing.TB) {
		Eventually(tb, 350*time.Millisecond, func() (bool, string) { n++; return false, fmt.Sprintf("poll %d", n) })
	})
	if want := fmt.Sprintf("last seen: poll %d", n); !strings.Contains(msg, want) || n < 3 {
		t.Errorf("Eventually failure = %q after %d polls; want it to contain %q", msg, n, want)
	}

	n = 0
	msg = runFake(func(tb testing.TB) {
		Consistently(tb, 5*time.Second, func() (bool, string) { n++; return n < 3, fmt.Sprintf("poll %d", n) })
	})
	if !strings.Contains(msg, "poll 3") {
		t.Errorf("Consistently failure = %q, want it to name poll 3", msg)
	}
	if msg := runFake(func(tb testing.TB) {
		Consistently(tb, 250*time.Millisecond, func() (bool, string) { return true, "" })
	}); msg != "" {
		t.Errorf("Consistently failed on a condition that always holds: %s", msg)
	}
}

func TestFigure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figures")
	t.Setenv(envFigures, path)
	Figure(t, "a_time", 1.5, "s")
	Figure(t, "b_time", 0.25, "s")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("a_time 1.500 s\nb_time 0.250 s\n", string(got)); diff != "" {
		t.Errorf("figures file (-want +got):\n%s", diff)
	}
}

func TestHCLQuote(t *testing.T) {
	for _, s := range []string{"", "plain", `back\slash`, `"quoted"`, "new\nline\ttab\r", "${var}", "%{ if }", "$$", "%", "ünï", "\x01\x7f"} {
		src := "x = " + hclQuote(s) + "\n"
		var got struct {
			X string `hcl:"x"`
		}
		if err := decodeHCL(src, &got); err != nil {
			t.Errorf("hclQuote(%q) = %s: %v", s, src, err)
			continue
		}
		if got.X != s {
			t.Errorf("hclQuote(%q) = %s, which reads back as %q", s, src, got.X)
		}
	}
}

// templateFile is what ConfigHCL may write; decoding into it rejects any
// other key.
type templateFile struct {
	NodeName  string        `hcl:"node_name"`
	DataDir   string        `hcl:"data_dir"`
	Socket    string        `hcl:"socket"`
	BindAddr  string        `hcl:"bind_addr"`
	Server    bool          `hcl:"server"`
	Bootstrap *bool         `hcl:"bootstrap,optional"`
	Tags      []string      `hcl:"tags,optional"`
	LogLevel  string        `hcl:"log_level"`
	Join      *templateJoin `hcl:"join,block"`
}

type templateJoin struct {
	Token     string   `hcl:"token"`
	Addresses []string `hcl:"addresses"`
}

func decodeHCL(src string, v any) error {
	f, diags := hclsyntax.ParseConfig([]byte(src), "weft.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return diags
	}
	if diags := gohcl.DecodeBody(f.Body, nil, v); diags.HasErrors() {
		return diags
	}
	return nil
}

func TestConfigHCL(t *testing.T) {
	mk := func(name string, last byte) *Host {
		dir := "/tmp/wf" + name
		return &Host{Name: name, IP: netip.AddrFrom4([4]byte{10, 213, 7, last}), DataDir: dir + "/data", Socket: dir + "/weft.sock"}
	}
	s1, s2, s3 := mk("s1", 11), mk("s2", 12), mk("s3", 13)
	tru := true

	for _, tc := range []struct {
		name string
		host *Host
		cfg  AgentConfig
		want templateFile
	}{
		{"bootstrap", s1, AgentConfig{Server: true, Bootstrap: true}, templateFile{
			NodeName: "s1", DataDir: "/tmp/wfs1/data", Socket: "/tmp/wfs1/weft.sock", BindAddr: "10.213.7.11",
			Server: true, Bootstrap: &tru, LogLevel: "debug",
		}},
		{"joining server leaves itself out", s2, AgentConfig{Server: true, Tags: []string{"web", "db"}, Token: "weft1.abc", JoinVia: []*Host{s1, s2, s3}}, templateFile{
			NodeName: "s2", DataDir: "/tmp/wfs2/data", Socket: "/tmp/wfs2/weft.sock", BindAddr: "10.213.7.12",
			Server: true, Tags: []string{"web", "db"}, LogLevel: "debug",
			Join: &templateJoin{Token: "weft1.abc", Addresses: []string{"10.213.7.11:7947", "10.213.7.13:7947"}},
		}},
		{"unjoined client", s3, AgentConfig{}, templateFile{
			NodeName: "s3", DataDir: "/tmp/wfs3/data", Socket: "/tmp/wfs3/weft.sock", BindAddr: "10.213.7.13", LogLevel: "debug",
		}},
	} {
		src := tc.host.ConfigHCL(tc.cfg)
		var got templateFile
		if err := decodeHCL(src, &got); err != nil {
			t.Errorf("%s: %v\n%s", tc.name, err, src)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s\n%s", tc.name, diff, src)
		}
	}
}

// TestTLSDialHelper runs the tlsdial helper (in this namespace) against
// local servers whose verdict is known.
func TestTLSDialHelper(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	rogue := newTestCA(t, "rogue")
	srvCert := ca.issue(t, dir, "server")
	goodCert, goodKey := ca.issueFiles(t, dir, "good")
	badCert, badKey := rogue.issueFiles(t, dir, "bad")

	// An mTLS server that trusts ca only, and after the handshake waits for
	// a request.
	mtls := serveTLS(t, &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool(),
	}, false)
	// A server that accepts any certificate but hangs up after the
	// handshake, as an application-level identity check would.
	hangup := serveTLS(t, &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAnyClientCert,
	}, true)
	closed := freeAddr(t)

	for _, tc := range []struct {
		name, addr, cert, key, wantPrefix string
	}{
		{"accepted", mtls, goodCert, goodKey, "handshake-ok"},
		{"wrong CA", mtls, badCert, badKey, "refused:"},
		{"hang-up after handshake", hangup, goodCert, goodKey, "refused:"},
		{"nothing listening", closed, goodCert, goodKey, "unreachable:"},
	} {
		out, err := runHelperIn("", "tlsdial", map[string]string{
			envHelperAddr: tc.addr, envHelperCert: tc.cert, envHelperKey: tc.key, envHelperTimeout: "300ms",
		})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		t.Logf("%s: %s", tc.name, out)
		if !strings.HasPrefix(out, tc.wantPrefix) {
			t.Errorf("%s: helper said %q, want %s...", tc.name, out, tc.wantPrefix)
		}
	}
}

func serveTLS(t *testing.T, cfg *tls.Config, hangup bool) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil || hangup {
					return
				}
				// Read until the client goes away, never answering.
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issueFiles issues a leaf usable as client and server and writes it as
// PEM files; it returns their paths.
func (ca *testCA) issueFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func (ca *testCA) issue(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	c, k := ca.issueFiles(t, dir, name)
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}
