package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/weft-mesh/weft/identity"
)

// applyTimeout bounds one Raft write.
const applyTimeout = 10 * time.Second

var randRead = rand.Read

// startRaft opens the Raft stores and transport (servers). bootstrap makes
// this server the sole voter of a new cluster.
func (c *Cluster) startRaft(li *localIdentity, bootstrap bool) error {
	dir := c.store.path(dirRaft)
	if err := ensureDir(dir); err != nil {
		return err
	}
	cert, err := li.tlsCert(true)
	if err != nil {
		return err
	}
	v := c.verifier(identity.KindServer)
	conf := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true, // resumption would skip VerifyPeerCertificate (revocation)
		InsecureSkipVerify:     true, // VerifyPeerCertificate checks the SPIFFE chain, both ways
		VerifyPeerCertificate:  v.VerifyPeerCertificate,
	}
	ln, err := net.Listen("tcp", joinAddr(c.opts.BindAddr.String(), c.opts.RaftPort))
	if err != nil {
		return fmt.Errorf("cluster: raft listen: %w", err)
	}
	advertised := &net.TCPAddr{IP: c.opts.AdvertiseAddr.AsSlice(), Port: c.opts.RaftPort}
	stream := advertisedStream{tlsStream: newTLSStream(ln, conf, c.log), addr: advertised}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  c.opts.RaftLogger,
	})
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		trans.Close()
		return fmt.Errorf("cluster: raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, c.opts.RaftLogger)
	if err != nil {
		trans.Close()
		bolt.Close()
		return fmt.Errorf("cluster: raft snapshots: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.opts.Name)
	rc.Logger = c.opts.RaftLogger
	rc.SnapshotThreshold = 1024
	// Twice raft's defaults (which suit a quiet LAN only): a leader keeps
	// its lease through a few lost packets or a starved CPU, at the price
	// of a failover of about 3-4 s instead of 2.
	rc.HeartbeatTimeout = 2 * time.Second
	rc.ElectionTimeout = 2 * time.Second
	rc.LeaderLeaseTimeout = 1500 * time.Millisecond
	if bootstrap {
		has, err := raft.HasExistingState(bolt, bolt, snaps)
		if err != nil {
			return err
		}
		if !has {
			cfg := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter,
				ID:       rc.LocalID,
				Address:  raft.ServerAddress(advertised.String()),
			}}}
			if err := raft.BootstrapCluster(rc, bolt, bolt, snaps, trans, cfg); err != nil {
				return fmt.Errorf("cluster: raft bootstrap: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, c.fsm, bolt, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		bolt.Close()
		return fmt.Errorf("cluster: raft: %w", err)
	}
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	go func() {
		for range obsCh {
			c.leaderChanges.Add(1)
		}
	}()
	c.mu.Lock()
	c.raft = r
	c.raftClose = []func() error{trans.Close, bolt.Close, func() error { r.DeregisterObserver(obs); close(obsCh); return nil }}
	c.mu.Unlock()
	return nil
}

func (c *Cluster) raftNode() *raft.Raft {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raft
}

func (c *Cluster) isLeader() bool {
	r := c.raftNode()
	return r != nil && r.State() == raft.Leader
}

// waitLeader waits until this server is the leader.
func (c *Cluster) waitLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.After(timeout)
	for !c.isLeader() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("cluster: did not become leader")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// applyLocal commits cmd through this server's Raft (it must be the
// leader) and returns the index it was applied at.
func (c *Cluster) applyLocal(cmd *Command) (uint64, error) {
	r := c.raftNode()
	if r == nil {
		return 0, ErrNotServer
	}
	if cmd.Now.IsZero() {
		cmd.Now = c.opts.Now().UTC()
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	f := r.Apply(b, applyTimeout)
	if obs := c.opts.ObserveApply; obs != nil {
		defer func() { obs(time.Since(start)) }()
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("cluster: raft apply: %w", err)
	}
	if res, ok := f.Response().(applyResult); ok && res.Err != nil {
		return f.Index(), res.Err
	}
	return f.Index(), nil
}

// apply commits cmd on the leader, forwarding it when this server is not
// the leader. It retries briefly across an election.
func (c *Cluster) apply(ctx context.Context, cmd *Command) (uint64, error) {
	if !c.opts.Server {
		return 0, ErrNotServer
	}
	if cmd.Now.IsZero() {
		cmd.Now = c.opts.Now().UTC()
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		var idx uint64
		var err error
		if c.isLeader() {
			idx, err = c.applyLocal(cmd)
		} else if addr, lerr := c.leaderRPCAddr(); lerr != nil {
			err = lerr
		} else {
			var resp applyResponse
			err = c.rpc.do(ctx, "POST", addr, rpcApply, cmd, &resp)
			idx = resp.Index
		}
		if err == nil || !errors.Is(err, ErrNotLeader) {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster: no leader to apply to: %w", ErrNotLeader)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leaderRPCAddr returns the RPC address of the current leader.
func (c *Cluster) leaderRPCAddr() (string, error) {
	r := c.raftNode()
	if r == nil {
		return "", ErrNotServer
	}
	_, id := r.LeaderWithID()
	if id == "" {
		return "", ErrNotLeader
	}
	n, ok := c.fsm.State().Nodes[string(id)]
	if !ok {
		return "", fmt.Errorf("%w: leader %q is not in the registry", ErrNotLeader, id)
	}
	return joinAddr(n.Addr, n.RPCPort), nil
}

// leaderLoop keeps the Raft voters equal to the registered servers while
// this server leads: a server that joined and is alive in gossip becomes a
// voter; one that left or was removed stops being one.
func (c *Cluster) leaderLoop(ctx context.Context) {
	r := c.raftNode()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.LeaderCh():
		}
		if r.State() == raft.Leader {
			if err := c.reconcileVoters(r); err != nil {
				c.log.Warn("raft: reconciling voters failed", "err", err)
			}
		}
	}
}

func (c *Cluster) reconcileVoters(r *raft.Raft) error {
	st := c.fsm.State()
	if st.CACert == "" {
		return nil // not initialized: the registry is not authoritative yet
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	inConfig := map[raft.ServerID]raft.Server{}
	for _, s := range f.Configuration().Servers {
		inConfig[s.ID] = s
	}
	view := c.gossipView()
	var errs []error
	for _, n := range st.Servers() {
		id := raft.ServerID(n.Name)
		addr := raft.ServerAddress(joinAddr(n.Addr, n.RaftPort))
		if s, ok := inConfig[id]; ok && s.Address == addr {
			continue
		}
		if p, ok := view[n.Name]; !ok || p.Status != StatusAlive {
			continue // its Raft may not be listening yet; add it once it gossips
		}
		c.log.Info("raft: adding voter", "peer", n.Name, "addr", string(addr))
		if err := r.AddVoter(id, addr, 0, applyTimeout).Error(); err != nil {
			errs = append(errs, fmt.Errorf("add voter %s: %w", n.Name, err))
		}
	}
	for id := range inConfig {
		if _, ok := st.Nodes[string(id)]; ok || string(id) == c.opts.Name {
			continue
		}
		c.log.Info("raft: removing voter that is no longer registered", "peer", string(id))
		if err := r.RemoveServer(id, 0, applyTimeout).Error(); err != nil {
			errs = append(errs, fmt.Errorf("remove voter %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// serveJoin handles a join on a server: the leader checks the token, signs
// the host's CSRs and registers it in one Raft command; a follower
// forwards the request to the leader.
func (c *Cluster) serveJoin(ctx context.Context, req *joinRequest) (*joinResponse, error) {
	if !c.isLeader() {
		addr, err := c.leaderRPCAddr()
		if err != nil {
			return nil, err
		}
		var resp joinResponse
		if err := c.rpc.do(ctx, "POST", addr, rpcJoin, req, &resp); err != nil {
			var re *RemoteError
			if errors.As(err, &re) && re.cause != nil {
				return nil, re.cause
			}
			return nil, err
		}
		return &resp, nil
	}
	st := c.fsm.State()
	if st.CACert == "" {
		return nil, ErrNotInitialized
	}
	if req.Role != RoleServer && req.Role != RoleClient {
		return nil, fmt.Errorf("%w: role %q", errBadRequest, req.Role)
	}
	id := identity.ID{Domain: st.Domain, Kind: identity.KindNode, Name: req.Name}
	if _, err := identity.ParseID(id.String()); err != nil {
		return nil, fmt.Errorf("%w: node name %q: %v", errBadRequest, req.Name, err)
	}
	if ip := net.ParseIP(req.Addr); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("%w: address %q", errBadRequest, req.Addr)
	}
	if err := validateLocal(req.Tags, req.Services); err != nil {
		return nil, err
	}
	now := c.opts.Now().UTC()
	hash := hashSecret(req.Secret)
	if err := checkToken(st, req.TokenID, hash, req.Role, now); err != nil {
		return nil, err
	}
	if old, ok := st.Nodes[req.Name]; ok && old.Role != req.Role {
		return nil, fmt.Errorf("%w: %q is registered as a %s; remove it first (weft node remove)", ErrNameInUse, req.Name, old.Role)
	}
	if _, ok := st.Nodes[req.Name]; ok {
		if p, ok := c.gossipView()[req.Name]; ok && p.Status == StatusAlive {
			return nil, fmt.Errorf("%w: %q", ErrNameInUse, req.Name)
		}
	}
	ca, err := identity.ParseCA([]byte(st.CACert), []byte(st.CAKey))
	if err != nil {
		return nil, fmt.Errorf("cluster: CA: %w", err)
	}
	node := Node{
		Name: req.Name, Role: req.Role, Addr: req.Addr,
		GossipPort: req.GossipPort, RPCPort: req.RPCPort, RaftPort: req.RaftPort, Tags: req.Tags, Services: req.Services,
	}
	resp := &joinResponse{Domain: st.Domain, CABundle: st.CACert, GossipKeys: st.GossipKeys}
	sign := func(csr string, kind identity.Kind) (string, error) {
		want := identity.ID{Domain: st.Domain, Kind: kind, Name: req.Name}
		certPEM, cert, err := ca.Sign([]byte(csr), want, c.opts.CertTTL, now)
		if err != nil {
			return "", fmt.Errorf("%w: %s CSR: %v", errBadRequest, kind, err)
		}
		node.Certs = append(node.Certs, CertRef{Serial: identity.SerialString(cert), NotAfter: cert.NotAfter})
		return string(certPEM), nil
	}
	if resp.NodeCert, err = sign(req.NodeCSR, identity.KindNode); err != nil {
		return nil, err
	}
	if req.Role == RoleServer {
		if resp.ServerCert, err = sign(req.ServerCSR, identity.KindServer); err != nil {
			return nil, err
		}
	}
	idx, err := c.applyLocal(&Command{Op: OpRegister, Now: now, Register: &RegisterCmd{TokenID: req.TokenID, SecretHash: hash, Node: node}})
	if err != nil {
		return nil, err
	}
	resp.State = c.fsm.State().Public()
	c.log.Info("node joined", "peer", req.Name, "role", req.Role, "addr", req.Addr, "index", idx)
	return resp, nil
}
