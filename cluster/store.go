package cluster

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-mesh/weft/identity"
	"github.com/weft-mesh/weft/internal/atomicfile"
	"github.com/weft-mesh/weft/internal/sealed"
)

// The files of the data dir. Every secret is written 0600 by atomic rename
// into a 0700 directory.
const (
	fileNodeInfo   = "node.json"
	fileNodeKey    = "node.key"
	fileNodeCert   = "node.crt"
	fileServerKey  = "server.key"
	fileServerCert = "server.crt"
	fileCABundle   = "ca.pem"
	fileGossipKey  = "gossip.key"
	fileState      = "state.json"
	dirRaft        = "raft"
)

// ErrCorruptState says a persisted state file failed its checksum.
var ErrCorruptState = errors.New("persisted state is corrupt")

// store is the agent's data dir.
type store struct{ dir string }

func (s store) path(name string) string { return filepath.Join(s.dir, name) }

// ensure creates the data dir with mode 0700.
func (s store) ensure() error {
	return atomicfile.EnsureDir(s.dir, 0o700)
}

// nodeInfo binds a data dir to one node.
type nodeInfo struct {
	Name   string `json:"name"`
	Domain string `json:"domain"`
	Role   Role   `json:"role"`
}

// localIdentity is everything a host needs to come back without a token.
type localIdentity struct {
	Info       nodeInfo
	NodeKey    *ecdsa.PrivateKey
	NodeCert   []byte // PEM
	ServerKey  *ecdsa.PrivateKey
	ServerCert []byte // PEM; servers only
	CABundle   []byte // PEM
	GossipKeys [][]byte
}

func (li *localIdentity) nodeSerial() string {
	c, err := identity.ParseCertPEM(li.NodeCert)
	if err != nil {
		return ""
	}
	return identity.SerialString(c)
}

// tlsCert returns the certificate this host presents: the server SVID on
// servers, the node SVID otherwise. The CA rides along so that a joining
// host can pin it by fingerprint.
func (li *localIdentity) tlsCert(server bool) (tls.Certificate, error) {
	certPEM, key := li.NodeCert, li.NodeKey
	if server {
		certPEM, key = li.ServerCert, li.ServerKey
	}
	keyPEM, err := identity.MarshalKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return identity.TLSCertificate(certPEM, keyPEM, li.CABundle)
}

func (li *localIdentity) roots() (*x509.CertPool, error) {
	certs, err := identity.ParseBundle(li.CABundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadIdentity returns the persisted identity, or nil when the data dir
// holds none (node.json is written last and removed first, so its
// presence means the set is complete).
func (s store) loadIdentity() (*localIdentity, error) {
	raw, err := os.ReadFile(s.path(fileNodeInfo))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: read identity: %w", err)
	}
	li := &localIdentity{}
	if err := json.Unmarshal(raw, &li.Info); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", s.path(fileNodeInfo), err)
	}
	read := func(name string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = os.ReadFile(s.path(name))
		return b
	}
	nodeKey := read(fileNodeKey)
	li.NodeCert = read(fileNodeCert)
	li.CABundle = read(fileCABundle)
	gossip := read(fileGossipKey)
	var serverKey []byte
	if li.Info.Role == RoleServer {
		serverKey = read(fileServerKey)
		li.ServerCert = read(fileServerCert)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: identity is incomplete: %w", err)
	}
	if li.NodeKey, err = identity.ParseKey(nodeKey); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", fileNodeKey, err)
	}
	if li.Info.Role == RoleServer {
		if li.ServerKey, err = identity.ParseKey(serverKey); err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", fileServerKey, err)
		}
	}
	if li.GossipKeys, err = parseGossipKeys(gossip); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", fileGossipKey, err)
	}
	return li, nil
}

// saveIdentity writes the identity files, node.json last.
func (s store) saveIdentity(li *localIdentity) error {
	if err := s.ensure(); err != nil {
		return err
	}
	nodeKey, err := identity.MarshalKey(li.NodeKey)
	if err != nil {
		return err
	}
	files := []namedFile{
		{fileNodeKey, nodeKey},
		{fileNodeCert, li.NodeCert},
		{fileCABundle, li.CABundle},
		{fileGossipKey, formatGossipKeys(li.GossipKeys)},
	}
	if li.Info.Role == RoleServer {
		serverKey, err := identity.MarshalKey(li.ServerKey)
		if err != nil {
			return err
		}
		files = append(files, namedFile{fileServerKey, serverKey}, namedFile{fileServerCert, li.ServerCert})
	}
	info, err := json.Marshal(li.Info)
	if err != nil {
		return err
	}
	files = append(files, namedFile{fileNodeInfo, info})
	for _, f := range files {
		if err := atomicfile.Write(s.path(f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

type namedFile struct {
	name string
	data []byte
}

// forgetIdentity removes the identity, the persisted state and the Raft
// data, so that the next start needs a new token.
func (s store) forgetIdentity() error {
	var errs []error
	for _, name := range []string{fileNodeInfo, fileNodeKey, fileNodeCert, fileServerKey, fileServerCert, fileCABundle, fileGossipKey, fileState} {
		if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(s.path(dirRaft)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// saveState persists st with a checksum (internal/sealed).
func (s store) saveState(st *State) error {
	return sealed.Write(s.path(fileState), st)
}

// loadState returns the persisted state, nil when there is none, or an
// error wrapping ErrCorruptState: a torn or altered file is never loaded.
func (s store) loadState() (*State, error) {
	var st State
	ok, err := sealed.Read(s.path(fileState), &st)
	if errors.Is(err, sealed.ErrCorrupt) {
		return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
	}
	if err != nil || !ok {
		return nil, err
	}
	st.normalize()
	return &st, nil
}

func formatGossipKeys(keys [][]byte) []byte {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func parseGossipKeys(raw []byte) ([][]byte, error) {
	var keys [][]byte
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, errors.New("a key is not valid base64")
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("a key is %d bytes, want 32", len(k))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no gossip key")
	}
	return keys, nil
}
