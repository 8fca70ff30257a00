package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-mesh/weft/identity"
)

// withUmask runs the rest of the test under umask m. The umask is
// process-wide: tests that use it must not run in parallel.
func withUmask(t *testing.T, m int) {
	t.Helper()
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// testIdentity issues a complete identity for name with a fresh CA.
func testIdentity(t *testing.T, name string, role Role) *localIdentity {
	t.Helper()
	const domain = "weft.test"
	ca, err := identity.NewCA(domain, t0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	li := &localIdentity{
		Info:       nodeInfo{Name: name, Domain: domain, Role: role},
		CABundle:   ca.CertPEM,
		GossipKeys: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)},
	}
	sign := func(kind identity.Kind) (certPEM []byte, key *ecdsa.PrivateKey) {
		k, err := identity.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		id := identity.ID{Domain: domain, Kind: kind, Name: name}
		csr, err := identity.NewCSR(k, id)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _, err = ca.Sign(csr, id, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, k
	}
	li.NodeCert, li.NodeKey = sign(identity.KindNode)
	if role == RoleServer {
		li.ServerCert, li.ServerKey = sign(identity.KindServer)
	}
	return li
}

// keyEqual compares private keys, nil included (a client has no server key).
var keyEqual = cmp.Comparer(func(a, b *ecdsa.PrivateKey) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
})

var identityFiles = []string{fileNodeInfo, fileNodeKey, fileNodeCert, fileCABundle, fileGossipKey}

func TestIdentityRoundTrip(t *testing.T) {
	for _, role := range []Role{RoleClient, RoleServer} {
		for _, existing := range []bool{false, true} {
			name := string(role) + "/new dir"
			if existing {
				name = string(role) + "/existing 0777 dir"
			}
			t.Run(name, func(t *testing.T) {
				withUmask(t, 0)
				dir := filepath.Join(t.TempDir(), "data")
				if existing {
					if err := os.Mkdir(dir, 0o777); err != nil {
						t.Fatal(err)
					}
				}
				s := store{dir: dir}
				li := testIdentity(t, "node-1", role)
				if err := s.saveIdentity(li); err != nil {
					t.Fatalf("saveIdentity: %v", err)
				}
				if got := fileMode(t, dir); got != 0o700 {
					t.Errorf("data dir mode = %v, want 0700", got)
				}
				want := slices.Clone(identityFiles)
				if role == RoleServer {
					want = append(want, fileServerKey, fileServerCert)
				}
				slices.Sort(want)
				if d := cmp.Diff(want, dirNames(t, dir)); d != "" {
					t.Errorf("files in the data dir (-want +got):\n%s", d)
				}
				for _, f := range want {
					if got := fileMode(t, s.path(f)); got != 0o600 {
						t.Errorf("%s mode = %v, want 0600", f, got)
					}
				}

				got, err := s.loadIdentity()
				if err != nil {
					t.Fatalf("loadIdentity: %v", err)
				}
				if got == nil {
					t.Fatal("loadIdentity found no identity")
				}
				if d := cmp.Diff(li, got, keyEqual); d != "" {
					t.Errorf("identity round trip (-saved +loaded):\n%s", d)
				}
				if _, err := got.tlsCert(role == RoleServer); err != nil {
					t.Errorf("loaded identity has no usable certificate: %v", err)
				}
				if got.nodeSerial() == "" || got.nodeSerial() != li.nodeSerial() {
					t.Errorf("node serial %q, want %q", got.nodeSerial(), li.nodeSerial())
				}
			})
		}
	}
}

func TestLoadIdentityNone(t *testing.T) {
	for name, dir := range map[string]string{
		"empty dir":   t.TempDir(),
		"missing dir": filepath.Join(t.TempDir(), "nope"),
	} {
		t.Run(name, func(t *testing.T) {
			li, err := store{dir: dir}.loadIdentity()
			if li != nil || err != nil {
				t.Errorf("loadIdentity = %v, %v; want nil, nil", li, err)
			}
		})
	}
}

func TestLoadIdentityIncomplete(t *testing.T) {
	tests := []struct {
		name    string
		role    Role
		breakIt func(s store) error
	}{
		{"node key missing", RoleClient, func(s store) error { return os.Remove(s.path(fileNodeKey)) }},
		{"server key missing", RoleServer, func(s store) error { return os.Remove(s.path(fileServerKey)) }},
		{"node key garbage", RoleClient, func(s store) error { return os.WriteFile(s.path(fileNodeKey), []byte("junk"), 0o600) }},
		{"gossip key garbage", RoleClient, func(s store) error { return os.WriteFile(s.path(fileGossipKey), []byte("!!!\n"), 0o600) }},
		{"node.json garbage", RoleClient, func(s store) error { return os.WriteFile(s.path(fileNodeInfo), []byte("{"), 0o600) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store{dir: t.TempDir()}
			if err := s.saveIdentity(testIdentity(t, "n", tt.role)); err != nil {
				t.Fatal(err)
			}
			if err := tt.breakIt(s); err != nil {
				t.Fatal(err)
			}
			li, err := s.loadIdentity()
			if err == nil || li != nil {
				t.Errorf("loadIdentity = %v, %v; want an error", li, err)
			}
		})
	}
}

func TestForgetIdentity(t *testing.T) {
	s := store{dir: filepath.Join(t.TempDir(), "data")}
	if err := s.saveIdentity(testIdentity(t, "srv", RoleServer)); err != nil {
		t.Fatal(err)
	}
	if err := s.saveState(fixtureFSM(t).State().Public()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.path(dirRaft), "snapshots"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.path(dirRaft), "raft.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.forgetIdentity(); err != nil {
		t.Fatalf("forgetIdentity: %v", err)
	}
	if got := dirNames(t, s.dir); len(got) != 0 {
		t.Errorf("data dir still holds %v", got)
	}
	if li, err := s.loadIdentity(); li != nil || err != nil {
		t.Errorf("loadIdentity after forget = %v, %v", li, err)
	}
	// Forgetting twice is fine.
	if err := s.forgetIdentity(); err != nil {
		t.Errorf("second forgetIdentity: %v", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	withUmask(t, 0)
	s := store{dir: t.TempDir()}
	if st, err := s.loadState(); st != nil || err != nil {
		t.Fatalf("loadState with no file = %v, %v; want nil, nil", st, err)
	}
	st := fixtureFSM(t).State()
	if err := s.saveState(st); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, s.path(fileState)); got != 0o600 {
		t.Errorf("state file mode = %v, want 0600", got)
	}
	got, err := s.loadState()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(st, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("state round trip (-saved +loaded):\n%s", d)
	}
	// Overwriting keeps only the newest.
	pub := st.Public()
	if err := s.saveState(pub); err != nil {
		t.Fatal(err)
	}
	if got, err = s.loadState(); err != nil || got.CAKey != "" {
		t.Errorf("after saving the public state: CAKey=%q, err=%v", got.CAKey, err)
	}
}

func TestStateCorrupt(t *testing.T) {
	s := store{dir: t.TempDir()}
	st := fixtureFSM(t).State().Public() // what agents persist
	if err := s.saveState(st); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(s.path(fileState))
	if err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, raw []byte) (*State, error) {
		t.Helper()
		if err := os.WriteFile(s.path(fileState), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return s.loadState()
	}

	t.Run("flipped byte", func(t *testing.T) {
		for i := range good {
			for _, mask := range []byte{0x01, 0x20, 0x80} {
				raw := bytes.Clone(good)
				raw[i] ^= mask
				got, err := load(t, raw)
				if err == nil {
					// encoding/json matches keys case-insensitively, so a case
					// flip in a key of the file's envelope still reads the
					// same, checksummed, content. Nothing else may load.
					c := good[i] | 0x20
					if mask != 0x20 || c < 'a' || c > 'z' {
						t.Fatalf("byte %d (%q) ^ %#x: the altered file loaded", i, good[i], mask)
					}
					if d := cmp.Diff(st, got, cmpopts.EquateEmpty()); d != "" {
						t.Fatalf("byte %d ^ %#x: loaded a different state:\n%s", i, mask, d)
					}
					continue
				}
				if !errors.Is(err, ErrCorruptState) || got != nil {
					t.Fatalf("byte %d ^ %#x: loadState = %v, %v; want nil and ErrCorruptState", i, mask, got != nil, err)
				}
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := range len(good) {
			got, err := load(t, good[:n])
			if !errors.Is(err, ErrCorruptState) || got != nil {
				t.Fatalf("truncated to %d bytes: loadState = %v, %v; want nil and ErrCorruptState", n, got != nil, err)
			}
		}
	})
	t.Run("valid JSON of the wrong shape", func(t *testing.T) {
		for _, raw := range []string{`{}`, `[]`, `{"sha256":"00","state":{}}`, `null`} {
			got, err := load(t, []byte(raw))
			if !errors.Is(err, ErrCorruptState) || got != nil {
				t.Errorf("%s: loadState = %v, %v; want nil and ErrCorruptState", raw, got != nil, err)
			}
		}
	})
}

func TestGossipKeys(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name string
		raw  string
		want [][]byte // nil: an error
	}{
		{"one key", b64(k1) + "\n", [][]byte{k1}},
		{"two keys, primary first", b64(k1) + "\n" + b64(k2) + "\n", [][]byte{k1, k2}},
		{"blank lines and spaces", "\n  " + b64(k2) + "  \r\n\n" + b64(k1), [][]byte{k2, k1}},
		{"empty", "", nil},
		{"only whitespace", " \n\t\n", nil},
		{"bad base64", "not base64!\n", nil},
		{"url base64", strings.ReplaceAll(b64(bytes.Repeat([]byte{0xfb}, 32)), "+", "-"), nil},
		{"16 byte key", b64(k1[:16]), nil},
		{"33 byte key", b64(append(bytes.Clone(k1), 0)), nil},
		{"one good, one bad", b64(k1) + "\n" + b64(k2[:31]), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGossipKeys([]byte(tt.raw))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("parseGossipKeys = %d keys, want an error", len(got))
				}
				if got != nil {
					t.Errorf("parseGossipKeys returned keys with its error")
				}
				// Key files are secrets: the error must not quote them.
				if line := strings.TrimSpace(tt.raw); len(line) > 8 && strings.Contains(err.Error(), line) {
					t.Errorf("error %q quotes the key file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("keys (-want +got):\n%s", d)
			}
			again, err := parseGossipKeys(formatGossipKeys(got))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Errorf("format/parse round trip (-want +got):\n%s", d)
			}
		})
	}
}
