package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/identity"
)

// Join makes this agent, which has no identity yet, a member of the
// cluster through one of the servers at addrs ("host:port"; the port
// defaults to the rpc port). The server is verified against the CA
// fingerprint in the token before anything is sent; keys are made here
// and only CSRs leave the host.
func (c *Cluster) Join(ctx context.Context, token string, addrs []string) error {
	if c.Joined() {
		return ErrAlreadyJoined
	}
	tok, err := ParseToken(token)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: join: no server address given (weft join -token T ADDR, or a join block)", ErrInvalid)
	}
	li := &localIdentity{Info: nodeInfo{Name: c.opts.Name, Domain: c.opts.Domain, Role: c.role()}}
	req := &joinRequest{
		TokenID: tok.ID, Secret: tok.Secret, Name: c.opts.Name, Role: c.role(),
		Addr: c.opts.AdvertiseAddr.String(), GossipPort: c.opts.GossipPort, RPCPort: c.opts.RPCPort,
		RaftPort: c.opts.RaftPort, Tags: c.local.Load().Tags, Services: c.local.Load().Services,
	}
	if li.NodeKey, err = identity.NewKey(); err != nil {
		return err
	}
	csr, err := identity.NewCSR(li.NodeKey, identity.ID{Domain: c.opts.Domain, Kind: identity.KindNode, Name: c.opts.Name})
	if err != nil {
		return err
	}
	req.NodeCSR = string(csr)
	if c.opts.Server {
		if li.ServerKey, err = identity.NewKey(); err != nil {
			return err
		}
		csr, err := identity.NewCSR(li.ServerKey, identity.ID{Domain: c.opts.Domain, Kind: identity.KindServer, Name: c.opts.Name})
		if err != nil {
			return err
		}
		req.ServerCSR = string(csr)
	}

	pinned := newRPCClient(&tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyPeerCertificate pins the CA from the token
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, _, err := identity.VerifyPinned(raw, tok.CAFingerprint, c.opts.Domain, []identity.Kind{identity.KindServer}, c.opts.Now())
			return err
		},
	})
	defer pinned.close()
	var resp joinResponse
	var errs []error
	reached := ""
	for _, a := range addrs {
		addr := c.withRPCPort(a)
		err := pinned.do(ctx, "POST", addr, rpcJoin, req, &resp)
		if err == nil {
			reached = addr
			break
		}
		errs = append(errs, err)
		var re *RemoteError
		if errors.As(err, &re) && re.Status != 503 {
			// The cluster answered and refused: another server would say the same.
			return fmt.Errorf("join refused: %w", err)
		}
	}
	if reached == "" {
		return fmt.Errorf("cluster: join: %w: %w", ErrNoServerReached, errors.Join(errs...))
	}
	if err := c.acceptJoin(li, &resp); err != nil {
		return err
	}
	if err := c.store.saveIdentity(li); err != nil {
		return err
	}
	if resp.State != nil {
		resp.State.normalize()
		if err := c.store.saveState(resp.State); err != nil {
			c.log.Warn("could not persist state", "err", err)
		}
	}
	c.log.Info("joined the cluster", "role", c.role(), "via", reached, "serial", li.nodeSerial())
	return c.startJoined(ctx, li, resp.State, []string{})
}

// acceptJoin checks what the server sent before it is stored: the
// certificates must be ours and chain to the pinned CA.
func (c *Cluster) acceptJoin(li *localIdentity, resp *joinResponse) error {
	if resp.Domain != c.opts.Domain {
		return fmt.Errorf("cluster: join: the cluster's domain is %q, this agent is configured for %q", resp.Domain, c.opts.Domain)
	}
	li.CABundle = []byte(resp.CABundle)
	li.NodeCert = []byte(resp.NodeCert)
	li.ServerCert = []byte(resp.ServerCert)
	keys, err := parseGossipKeys([]byte(strings.Join(resp.GossipKeys, "\n")))
	if err != nil {
		return fmt.Errorf("cluster: join: gossip keyring: %w", err)
	}
	li.GossipKeys = keys
	if _, err := li.tlsCert(false); err != nil {
		return fmt.Errorf("cluster: join: node certificate: %w", err)
	}
	if c.opts.Server {
		if _, err := li.tlsCert(true); err != nil {
			return fmt.Errorf("cluster: join: server certificate: %w", err)
		}
	}
	return nil
}

// withRPCPort adds the rpc port to an address that has none.
func (c *Cluster) withRPCPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(c.opts.RPCPort))
}

// syncLoop keeps a client's copy of the state current: a long poll
// ("state newer than index N") against one server at a time, moving on to
// another after a failure. The copy is kept, and persisted, whatever
// happens to the servers: fail static.
func (c *Cluster) syncLoop(ctx context.Context, extra []string) {
	backoff := 250 * time.Millisecond
	k := rand.IntN(1 << 16)
	for ctx.Err() == nil {
		st := c.fsm.State()
		servers := st.Servers()
		if len(servers) == 0 {
			// No state (a corrupt file was refused): find servers in
			// gossip, else at the configured seeds.
			servers = c.gossipServers()
		}
		if len(servers) == 0 {
			servers = c.seedServers()
		}
		if len(servers) == 0 {
			c.setSyncErr("no server known")
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		s := servers[k%len(servers)]
		addr := joinAddr(s.Addr, s.RPCPort)
		var next State
		reqCtx, cancel := context.WithTimeout(ctx, 45*time.Second)
		err := c.rpc.do(reqCtx, "GET", addr, fmt.Sprintf("%s?index=%d&wait=30s", rpcState, st.Index), nil, &next)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && c.leaving.Load() {
			if !sleepCtx(ctx, backoff) {
				return
			}
			continue
		}
		if err != nil {
			if errors.Is(err, ErrRevoked) {
				c.setSyncErr(ErrRevoked.Error())
				c.log.Error("a server refused this node's certificate: it was removed from the cluster; join again with a new token", "server", addr)
			} else {
				c.setSyncErr(err.Error())
				c.log.Debug("state sync failed; trying another server", "server", addr, "err", err)
			}
			k++
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		c.setSyncErr("")
		next.normalize()
		if next.Index > st.Index {
			c.fsm.publish(&next)
			c.log.Debug("state synced", "index", next.Index, "server", addr)
		}
	}
}

func (c *Cluster) setSyncErr(s string) { c.syncErr.Store(&s) }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// gossipServers returns the servers alive in gossip that announce their
// rpc port, sorted by name. Only where to ask comes from gossip: what a
// server answers is verified against the CA like any other answer.
func (c *Cluster) gossipServers() []*Node {
	var out []*Node
	for _, p := range c.gossipView() {
		if p.Status == StatusAlive && p.Meta.Role == RoleServer && p.Meta.RPCPort > 0 {
			out = append(out, &Node{Name: p.Name, Role: RoleServer, Addr: p.Addr, RPCPort: p.Meta.RPCPort})
		}
	}
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// seedServers turns Options.Seeds into server entries to sync from.
func (c *Cluster) seedServers() []*Node {
	var out []*Node
	for _, s := range c.opts.Seeds {
		host, port, err := net.SplitHostPort(c.withRPCPort(s))
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		out = append(out, &Node{Name: s, Role: RoleServer, Addr: host, RPCPort: p})
	}
	return out
}
