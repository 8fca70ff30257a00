package identity

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"
)

// handshake runs a TLS handshake between the two configs over an in-memory
// pipe. After a successful handshake the server sends one byte, which the
// client reads: in TLS 1.3 the client finishes its handshake before the server
// has checked the client's certificate, so only that read shows the client a
// rejection. It returns each side's error and, on success, the identities each
// side saw.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (serverErr, clientErr error, serverSaw, clientSaw ID) {
	t.Helper()
	sc, cc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second) // bounds the test if a side hangs
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)

	type result struct {
		err error
		saw ID
	}
	done := make(chan result, 1)
	go func() {
		// Closing the pipe rather than the tls.Conn: a close_notify would
		// block on the synchronous pipe while the other side also writes one.
		defer sc.Close()
		srv := tls.Server(sc, serverCfg)
		if err := srv.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var saw ID
		if pc := srv.ConnectionState().PeerCertificates; len(pc) > 0 {
			saw, _ = IDFromCert(pc[0])
		}
		_, err := srv.Write([]byte("x"))
		done <- result{err: err, saw: saw}
	}()

	cli := tls.Client(cc, clientCfg)
	clientErr = cli.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(cli, make([]byte, 1))
	}
	if pc := cli.ConnectionState().PeerCertificates; clientErr == nil && len(pc) > 0 {
		clientSaw, _ = IDFromCert(pc[0])
	}
	cc.Close()
	r := <-done
	return r.err, clientErr, r.saw, clientSaw
}

func TestTLSHandshake(t *testing.T) {
	ca := newCA(t, domain)
	otherCA := newCA(t, domain)
	now := func() time.Time { return t0 }

	tlsCert := func(l leaf) tls.Certificate {
		t.Helper()
		c, err := TLSCertificate(l.certPEM, l.keyPEM, ca.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	server := tlsCert(issue(t, ca, ID{domain, KindServer, "s1"}, time.Hour, t0))
	server2 := tlsCert(issue(t, ca, ID{domain, KindServer, "s2"}, time.Hour, t0))
	node := tlsCert(issue(t, ca, ID{domain, KindNode, "n1"}, time.Hour, t0))
	stranger := tlsCert(issue(t, otherCA, ID{domain, KindServer, "s3"}, time.Hour, t0))

	verifier := func(kinds ...Kind) *Verifier {
		return &Verifier{Domain: domain, Roots: ca.Pool, Kinds: kinds, Now: now}
	}
	pinned := func(fp string) *tls.Config {
		return &tls.Config{
			MinVersion:         tls.VersionTLS13,
			InsecureSkipVerify: true, // VerifyPinned replaces the standard verification
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				_, _, err := VerifyPinned(raw, fp, domain, []Kind{KindServer}, t0)
				return err
			},
		}
	}
	// The join endpoint: a joining host has no certificate yet.
	joinServer := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{server}}

	tests := []struct {
		name                 string
		server, client       *tls.Config
		serverErr, clientErr error
		serverSaw, clientSaw ID
	}{
		{
			name:   "server to server",
			server: verifier(KindServer).Config(server, true), client: verifier(KindServer).Config(server2, false),
			serverSaw: ID{domain, KindServer, "s2"}, clientSaw: ID{domain, KindServer, "s1"},
		},
		{
			name:   "node to a server that accepts nodes",
			server: verifier(KindNode, KindServer).Config(server, true), client: verifier(KindServer).Config(node, false),
			serverSaw: ID{domain, KindNode, "n1"}, clientSaw: ID{domain, KindServer, "s1"},
		},
		{
			name:   "node to a server that requires a server",
			server: verifier(KindServer).Config(server, true), client: verifier(KindServer).Config(node, false),
			serverErr: ErrWrongKind, clientErr: errAny,
		},
		{
			name:   "client that requires a server meets a node",
			server: verifier(KindNode).Config(node, true), client: verifier(KindServer).Config(server2, false),
			serverErr: errAny, clientErr: ErrWrongKind,
		},
		{
			name:   "client from another CA",
			server: verifier(KindServer).Config(server, true), client: verifier(KindServer).Config(stranger, false),
			serverErr: ErrUntrusted, clientErr: errAny,
		},
		{
			name:   "server from another CA",
			server: verifier(KindServer).Config(stranger, true), client: verifier(KindServer).Config(server2, false),
			serverErr: errAny, clientErr: ErrUntrusted,
		},
		{
			name:   "joining host pins the CA",
			server: joinServer, client: pinned(Fingerprint(ca.Cert)),
			clientSaw: ID{domain, KindServer, "s1"},
		},
		{
			name:   "joining host pins another CA",
			server: joinServer, client: pinned(Fingerprint(otherCA.Cert)),
			serverErr: errAny, clientErr: ErrUntrusted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr, serverSaw, clientSaw := handshake(t, tt.server, tt.client)
			t.Run("server", func(t *testing.T) { checkErr(t, serverErr, tt.serverErr) })
			t.Run("client", func(t *testing.T) { checkErr(t, clientErr, tt.clientErr) })
			if serverSaw != tt.serverSaw || clientSaw != tt.clientSaw {
				t.Errorf("server saw %v, client saw %v; want %v, %v", serverSaw, clientSaw, tt.serverSaw, tt.clientSaw)
			}
		})
	}
}
