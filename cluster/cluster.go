package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/weft-mesh/weft/identity"
)

// Options configure a Cluster. Fields are required unless marked optional.
type Options struct {
	Name          string
	Domain        string
	DataDir       string
	BindAddr      netip.Addr
	AdvertiseAddr netip.Addr
	GossipPort    int
	RPCPort       int // servers listen here; clients dial it
	RaftPort      int // servers only
	Server        bool
	Bootstrap     bool // optional: create the cluster if this host has no identity yet
	Tags          []string
	Services      []Service // optional: the services this host declares
	// Seeds are optional: server rpc addresses (host:port) to sync from
	// when this agent knows no server from its state or gossip, e.g.
	// after its persisted state was refused as corrupt.
	Seeds  []string
	Logger *slog.Logger
	// RaftLogger and GossipLogOutput are optional adapters of the libraries'
	// own loggers; nil discards their output.
	RaftLogger      hclog.Logger
	GossipLogOutput io.Writer
	// Now is optional (default time.Now); tests inject a clock.
	Now func() time.Time
	// CertTTL is optional: the lifetime of node and server SVIDs
	// (default DefaultCertTTL).
	CertTTL time.Duration
	// CATTL is optional: the lifetime of the CA created at bootstrap
	// (default DefaultCATTL).
	CATTL time.Duration
	// ObserveApply is optional: called with the time each Raft write took
	// on this server, from proposal to applied (commit latency).
	ObserveApply func(time.Duration)
}

// Defaults for Options.
const (
	DefaultCertTTL = 365 * 24 * time.Hour
	DefaultCATTL   = 10 * 365 * 24 * time.Hour
)

// Cluster is one agent's membership in the cluster: its identity, the
// gossip pool, and on servers Raft and the RPC listener; on clients the
// state sync from the servers.
type Cluster struct {
	opts  Options
	log   *slog.Logger
	store store
	fsm   *FSM

	mu        sync.Mutex
	ident     *localIdentity // nil until joined
	raft      *raft.Raft
	raftClose []func() error
	gossip    *gossip
	rpcServer *http.Server
	rpc       *rpcClient
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	joined         atomic.Bool
	leaving        atomic.Bool            // a graceful leave is under way
	policyApplied  atomic.Uint64          // the policy version the dataplane enforces
	syncErr        atomic.Pointer[string] // clients: last sync failure, "" when fine
	persistReq     chan struct{}
	local          atomic.Pointer[localDecl] // tags and services this host declares now
	localChanged   chan struct{}
	failing        atomic.Pointer[[]string] // services whose checks fail on this host
	failingVersion atomic.Uint64
	leaderChanges  atomic.Uint64
	metaKick       chan struct{}
	publicMu       sync.Mutex // guards the encoded public state of publicIndex
	publicIndex    uint64
	publicBody     []byte
}

// New validates opts and loads any identity the data dir holds. It starts
// nothing.
func New(opts Options) (*Cluster, error) {
	if opts.Name == "" || opts.Domain == "" || opts.DataDir == "" || opts.Logger == nil {
		return nil, errors.New("cluster: Name, Domain, DataDir and Logger are required")
	}
	if !opts.AdvertiseAddr.IsValid() || opts.AdvertiseAddr.IsUnspecified() {
		return nil, errors.New("cluster: AdvertiseAddr is required")
	}
	if opts.Bootstrap && !opts.Server {
		return nil, errors.New("cluster: bootstrap requires server")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CertTTL == 0 {
		opts.CertTTL = DefaultCertTTL
	}
	if opts.CATTL == 0 {
		opts.CATTL = DefaultCATTL
	}
	if opts.RaftLogger == nil {
		opts.RaftLogger = hclog.NewNullLogger()
	}
	c := &Cluster{
		opts:         opts,
		log:          opts.Logger,
		store:        store{dir: opts.DataDir},
		fsm:          NewFSM(),
		persistReq:   make(chan struct{}, 1),
		localChanged: make(chan struct{}, 1),
		metaKick:     make(chan struct{}, 1),
	}
	c.local.Store(&localDecl{Tags: slices.Clone(opts.Tags), Services: slices.Clone(opts.Services)})
	c.fsm.onApply = func(*State) {
		select {
		case c.persistReq <- struct{}{}:
		default:
		}
	}
	li, err := c.store.loadIdentity()
	if err != nil {
		return nil, err
	}
	if li != nil {
		if err := c.checkIdentity(li); err != nil {
			return nil, err
		}
		c.ident = li
	}
	return c, nil
}

func (c *Cluster) checkIdentity(li *localIdentity) error {
	want := nodeInfo{Name: c.opts.Name, Domain: c.opts.Domain, Role: c.role()}
	if li.Info != want {
		return fmt.Errorf("cluster: data dir %s holds the identity of %s %q in %q, but this agent is configured as %s %q in %q; use another data_dir or remove it",
			c.opts.DataDir, li.Info.Role, li.Info.Name, li.Info.Domain, want.Role, want.Name, want.Domain)
	}
	return nil
}

func (c *Cluster) role() Role {
	if c.opts.Server {
		return RoleServer
	}
	return RoleClient
}

// HasIdentity reports whether the data dir held an identity at New, or
// one has been made since: the agent belongs to a cluster, running or not.
func (c *Cluster) HasIdentity() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ident != nil
}

// Joined reports whether this agent is running as a member of a cluster.
func (c *Cluster) Joined() bool { return c.joined.Load() }

// State returns the state this agent holds now.
func (c *Cluster) State() *State { return c.fsm.State() }

// WaitState returns the state once its index is greater than index, or
// the current state when ctx ends first.
func (c *Cluster) WaitState(ctx context.Context, index uint64) *State { return c.fsm.Wait(ctx, index) }

// SetPolicyApplied announces in gossip the policy version this host's
// dataplane enforces.
func (c *Cluster) SetPolicyApplied(version uint64) {
	c.policyApplied.Store(version)
	c.kickMeta()
}

// Start brings the agent up: from its persisted identity if it has one,
// by creating the cluster if it is the bootstrap server, or else it waits
// for Join.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	li := c.ident
	c.mu.Unlock()
	switch {
	case li != nil:
		return c.resume(ctx, li)
	case c.opts.Bootstrap:
		return c.bootstrap(ctx)
	}
	c.log.Info("not part of a cluster yet: waiting for a join (weft join, or a join block)")
	return nil
}

// resume starts from the persisted identity and state.
func (c *Cluster) resume(ctx context.Context, li *localIdentity) error {
	st, err := c.store.loadState()
	if err != nil {
		c.log.Warn("ignoring persisted state", "err", err)
	}
	c.log.Info("resuming with persisted identity", "role", li.Info.Role, "serial", li.nodeSerial())
	return c.startJoined(ctx, li, st, nil)
}

// bootstrap creates the cluster: the CA, the gossip key and this first
// server, committed as the first Raft command.
func (c *Cluster) bootstrap(ctx context.Context) error {
	if err := c.store.ensure(); err != nil {
		return err
	}
	// Raft state without an identity means an earlier bootstrap died before
	// it finished; nothing could have joined it, so start over.
	if err := os.RemoveAll(c.store.path(dirRaft)); err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	now := c.opts.Now()
	ca, err := identity.NewCA(c.opts.Domain, now, c.opts.CATTL)
	if err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	gossipKey := make([]byte, 32)
	if _, err := randRead(gossipKey); err != nil {
		return err
	}
	li := &localIdentity{
		Info:       nodeInfo{Name: c.opts.Name, Domain: c.opts.Domain, Role: RoleServer},
		CABundle:   ca.CertPEM,
		GossipKeys: [][]byte{gossipKey},
	}
	node := c.selfNode()
	if err := c.issueLocal(li, ca, &node, now); err != nil {
		return err
	}
	if err := c.startRaft(li, true); err != nil {
		return err
	}
	c.log.Info("bootstrapping a new cluster", "domain", c.opts.Domain, "ca_fingerprint", identity.Fingerprint(ca.Cert))
	if err := c.waitLeader(ctx, 30*time.Second); err != nil {
		return err
	}
	init := &InitCmd{
		Domain:     c.opts.Domain,
		CACert:     string(ca.CertPEM),
		CAKey:      string(ca.KeyPEM),
		GossipKeys: []string{encodeKey(gossipKey)},
		Node:       node,
	}
	if _, err := c.applyLocal(&Command{Op: OpInit, Init: init}); err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	if err := c.store.saveIdentity(li); err != nil {
		return err
	}
	return c.startJoined(ctx, li, nil, nil)
}

// issueLocal gives li fresh keys and SVIDs signed by ca (bootstrap only).
func (c *Cluster) issueLocal(li *localIdentity, ca *identity.CA, node *Node, now time.Time) error {
	var err error
	if li.NodeKey, err = identity.NewKey(); err != nil {
		return err
	}
	if li.ServerKey, err = identity.NewKey(); err != nil {
		return err
	}
	sign := func(key *ecdsa.PrivateKey, kind identity.Kind) ([]byte, error) {
		id := identity.ID{Domain: c.opts.Domain, Kind: kind, Name: c.opts.Name}
		csr, err := identity.NewCSR(key, id)
		if err != nil {
			return nil, err
		}
		certPEM, cert, err := ca.Sign(csr, id, c.opts.CertTTL, now)
		if err != nil {
			return nil, err
		}
		node.Certs = append(node.Certs, CertRef{Serial: identity.SerialString(cert), NotAfter: cert.NotAfter})
		return certPEM, nil
	}
	if li.NodeCert, err = sign(li.NodeKey, identity.KindNode); err != nil {
		return err
	}
	li.ServerCert, err = sign(li.ServerKey, identity.KindServer)
	return err
}

// selfNode is this host's registry entry, without certificates.
func (c *Cluster) selfNode() Node {
	return Node{
		Name:       c.opts.Name,
		Role:       c.role(),
		Addr:       c.opts.AdvertiseAddr.String(),
		GossipPort: c.opts.GossipPort,
		RPCPort:    c.opts.RPCPort,
		RaftPort:   c.opts.RaftPort,
		Tags:       slices.Clone(c.opts.Tags),
		Services:   slices.Clone(c.opts.Services),
	}
}

// startJoined starts everything that needs an identity. prev is a state
// to take gossip peers from (the persisted one); extra are addresses to
// try as well (the servers a join just reached).
func (c *Cluster) startJoined(ctx context.Context, li *localIdentity, prev *State, extra []string) error {
	c.mu.Lock()
	c.ident = li
	c.mu.Unlock()
	clientTLS, err := c.clientTLS(li)
	if err != nil {
		return err
	}
	c.rpc = newRPCClient(clientTLS)
	// A client's state comes from the servers; until the first sync it is
	// the one it persisted or got at join. Published only now, with the
	// RPC client in place, because its watchers may call servers at once.
	if !c.opts.Server && prev != nil && c.fsm.State().Index < prev.Index {
		c.fsm.publish(prev)
	}
	if c.opts.Server {
		if c.raft == nil {
			if err := c.startRaft(li, false); err != nil {
				return err
			}
		}
		if err := c.startRPC(li); err != nil {
			return err
		}
	}
	g, err := newGossip(gossipConfig{
		Name:          c.opts.Name,
		BindAddr:      c.opts.BindAddr.String(),
		AdvertiseAddr: c.opts.AdvertiseAddr.String(),
		Port:          c.opts.GossipPort,
		Keys:          li.GossipKeys,
		LogOutput:     c.opts.GossipLogOutput,
		Refuse:        c.refuseGossip,
		Meta:          nodeMeta{Role: c.role(), Index: c.fsm.State().Index},
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.gossip = g
	c.mu.Unlock()

	loopCtx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	c.joined.Store(true)
	c.goLoop(func() { c.persistLoop(loopCtx) })
	c.goLoop(func() { c.metaLoop(loopCtx) })
	c.goLoop(func() { c.rejoinLoop(loopCtx, prev, extra) })
	c.goLoop(func() { c.localLoop(loopCtx) })
	if c.opts.Server {
		c.goLoop(func() { c.leaderLoop(loopCtx) })
	} else {
		c.goLoop(func() { c.syncLoop(loopCtx, extra) })
	}
	return nil
}

func (c *Cluster) goLoop(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// gossipView returns this agent's gossip view; empty before gossip starts
// and after it stops.
func (c *Cluster) gossipView() map[string]gossipPeer {
	c.mu.Lock()
	g := c.gossip
	c.mu.Unlock()
	if g == nil {
		return map[string]gossipPeer{}
	}
	return g.view()
}

// refuseGossip ignores gossip about nodes that were removed and have not
// joined again.
func (c *Cluster) refuseGossip(name string) bool {
	st := c.fsm.State()
	_, removed := st.Tombstones[name]
	_, registered := st.Nodes[name]
	return removed && !registered
}

// verifier checks peers against the current trust bundle and revocations.
func (c *Cluster) verifier(kinds ...identity.Kind) *identity.Verifier {
	return &identity.Verifier{
		Domain: c.opts.Domain,
		Roots:  c.roots,
		Kinds:  kinds,
		Revoked: func(serial string) bool {
			return c.fsm.State().IsRevoked(serial)
		},
		Now: c.opts.Now,
	}
}

// roots is the trust bundle: the replicated one once known, else the one
// this host got at join.
func (c *Cluster) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	if st := c.fsm.State(); st.CACert != "" {
		if certs, err := identity.ParseBundle([]byte(st.CACert)); err == nil {
			for _, cert := range certs {
				pool.AddCert(cert)
			}
			return pool
		}
	}
	c.mu.Lock()
	li := c.ident
	c.mu.Unlock()
	if li != nil {
		if p, err := li.roots(); err == nil {
			return p
		}
	}
	return pool
}

// clientTLS is the TLS config for dialing servers with this host's SVID.
func (c *Cluster) clientTLS(li *localIdentity) (*tls.Config, error) {
	cert, err := li.tlsCert(c.opts.Server)
	if err != nil {
		return nil, fmt.Errorf("cluster: load certificate: %w", err)
	}
	v := c.verifier(identity.KindServer)
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // VerifyPeerCertificate checks the SPIFFE chain instead of a host name
		VerifyPeerCertificate: v.VerifyPeerCertificate,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}, nil
}

// startRPC listens on the rpc port (servers).
func (c *Cluster) startRPC(li *localIdentity) error {
	cert, err := li.tlsCert(true)
	if err != nil {
		return err
	}
	conf := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequestClientCert, // joins come without one; handlers verify
		SessionTicketsDisabled: true,
	}
	ln, err := net.Listen("tcp", joinAddr(c.opts.BindAddr.String(), c.opts.RPCPort))
	if err != nil {
		return fmt.Errorf("cluster: rpc listen: %w", err)
	}
	// Long polls of syncing clients end when the server shuts down.
	baseCtx, stop := context.WithCancel(context.Background())
	srv := &http.Server{
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		Handler:           c.rpcHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slogErrorLog(c.log),
	}
	srv.RegisterOnShutdown(stop)
	c.rpcServer = srv
	go func() {
		if err := srv.Serve(tls.NewListener(ln, conf)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("rpc server stopped", "err", err)
		}
	}()
	return nil
}

// persistLoop writes the state to disk after changes, at most once per
// 200ms, so that the agent can come back alone.
func (c *Cluster) persistLoop(ctx context.Context) {
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.persistReq:
		}
		st := c.fsm.State()
		if st.Index != last && st.CACert != "" {
			if err := c.store.saveState(st.Public()); err != nil {
				c.log.Error("could not persist state; will retry", "index", st.Index, "err", err)
				// Try again without waiting for a new change: a full
				// disk that gets space back must not leave an old file.
				select {
				case c.persistReq <- struct{}{}:
				default:
				}
				if !sleepCtx(ctx, time.Second) {
					return
				}
				continue
			}
			last = st.Index
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metaLoop announces the applied state index, the policy version the
// dataplane enforces, failing checks and, on servers, the leader in gossip
// whenever they change. It wakes on new state, on a kick (SetPolicyApplied,
// SetFailing) and twice a second for the leader.
func (c *Cluster) metaLoop(ctx context.Context) {
	var last nodeMeta
	var announced time.Time
	for {
		st := c.fsm.State()
		m := nodeMeta{Role: c.role(), Index: st.Index, Policy: c.policyApplied.Load()}
		if f := c.failing.Load(); f != nil {
			m.Failing = strings.Join(*f, ",")
		}
		if r := c.raftNode(); r != nil {
			_, id := r.LeaderWithID()
			m.Leader, m.RPCPort = string(id), c.opts.RPCPort
		}
		// Re-announce now and then even when nothing changed: a meta
		// broadcast that some peer missed would otherwise wait for the
		// next push-pull to reach it.
		if m != last || time.Since(announced) > metaRefresh {
			last, announced = m, time.Now()
			c.gossip.setMeta(m)
			// The update is queued for gossip at once; waiting for it to be
			// sent (up to a second with few peers) would only delay the
			// next one. A timeout here means "not sent yet", not failed.
			_ = c.gossip.ml.UpdateNode(50 * time.Millisecond)
		}
		wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		go func() {
			select {
			case <-c.metaKick:
				cancel()
			case <-wait.Done():
			}
		}()
		c.fsm.Wait(wait, last.Index)
		cancel()
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// metaRefresh is how often an unchanged gossip meta is announced again.
const metaRefresh = 5 * time.Second

// kickMeta makes metaLoop announce now.
func (c *Cluster) kickMeta() {
	select {
	case c.metaKick <- struct{}{}:
	default:
	}
}

// maxRejoin bounds the addresses one rejoin contacts.
const maxRejoin = 4

// rejoinLoop (re)joins gossip: at once with what is known, then every
// few seconds with registered nodes this agent does not see alive, so
// that a pool split by an outage or a restart heals by itself.
func (c *Cluster) rejoinLoop(ctx context.Context, prev *State, extra []string) {
	const interval = 5 * time.Second
	first := true
	for {
		st := c.fsm.State()
		if prev != nil && st.Index == 0 {
			st = prev
		}
		addrs := slices.Clone(extra)
		if !first {
			addrs = nil
		}
		view := c.gossipView()
		for _, n := range st.SortedNodes() {
			if n.Name == c.opts.Name || n.Addr == "" {
				continue
			}
			if p, ok := view[n.Name]; ok && p.Status == StatusAlive {
				continue
			}
			addrs = append(addrs, joinAddr(n.Addr, n.GossipPort))
		}
		// A few at a time: memberlist exchanges the whole member list with
		// every address it is given, and one live peer is enough to heal.
		if len(addrs) > maxRejoin {
			rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
			addrs = addrs[:maxRejoin]
		}
		if len(addrs) > 0 {
			if n, err := c.gossip.join(addrs); err != nil && n == 0 {
				c.log.Debug("gossip: join found nobody", "tried", len(addrs), "err", err)
			} else if first {
				c.log.Info("joined gossip", "contacted", n)
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Shutdown stops the agent without leaving: peers will see it fail, and it
// comes back with the same identity.
func (c *Cluster) Shutdown() error {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if c.rpcServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, c.rpcServer.Shutdown(ctx))
		cancel()
		c.rpcServer = nil
	}
	if c.gossip != nil {
		errs = append(errs, c.gossip.shutdown())
		c.gossip = nil
	}
	if c.raft != nil {
		errs = append(errs, c.raft.Shutdown().Error())
		for _, f := range c.raftClose {
			errs = append(errs, f())
		}
		c.raft, c.raftClose = nil, nil
	}
	if c.rpc != nil {
		c.rpc.close()
	}
	c.joined.Store(false)
	return errors.Join(errs...)
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
