package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weft-mesh/weft/identity"
)

// TokenRequest says what a new join token allows.
type TokenRequest struct {
	Server bool          // the token joins servers (else clients)
	TTL    time.Duration // how long it stays valid
	Uses   int           // how many joins it allows
}

// IssuedToken is a token just created. Token is the only copy of the
// secret there will ever be.
type IssuedToken struct {
	Token   string
	Expires time.Time
	Uses    int
	Server  bool
}

// CreateToken stores a new join token (hashed) and returns it (servers).
func (c *Cluster) CreateToken(ctx context.Context, req TokenRequest) (IssuedToken, error) {
	if !c.opts.Server {
		return IssuedToken{}, ErrNotServer
	}
	if !c.Joined() {
		return IssuedToken{}, ErrNotJoined
	}
	if req.TTL <= 0 || req.TTL > 365*24*time.Hour {
		return IssuedToken{}, fmt.Errorf("token ttl must be between 1s and 8760h, got %s", req.TTL)
	}
	if req.Uses < 1 || req.Uses > 100000 {
		return IssuedToken{}, fmt.Errorf("token uses must be between 1 and 100000, got %d", req.Uses)
	}
	st := c.fsm.State()
	certs, err := identity.ParseBundle([]byte(st.CACert))
	if err != nil {
		return IssuedToken{}, fmt.Errorf("cluster: CA bundle: %w", err)
	}
	tok, err := newToken(identity.Fingerprint(certs[0]))
	if err != nil {
		return IssuedToken{}, err
	}
	now := c.opts.Now().UTC()
	t := &Token{ID: tok.ID, SecretHash: tok.SecretHash(), Server: req.Server, Expires: now.Add(req.TTL), UsesLeft: req.Uses}
	idx, err := c.apply(ctx, &Command{Op: OpToken, Now: now, Token: t})
	if err != nil {
		return IssuedToken{}, err
	}
	c.log.Info("join token created", "token_id", tok.ID, "server", req.Server, "uses", req.Uses, "expires", t.Expires, "index", idx)
	return IssuedToken{Token: tok.String(), Expires: t.Expires, Uses: req.Uses, Server: req.Server}, nil
}

// RemoveNode deregisters another host, typically a dead one (servers).
// Its certificates are revoked and every peer drops it.
func (c *Cluster) RemoveNode(ctx context.Context, name string) error {
	if !c.opts.Server {
		return ErrNotServer
	}
	if name == c.opts.Name {
		return fmt.Errorf("%w: a node cannot remove itself: use weft leave", ErrInvalid)
	}
	if _, ok := c.fsm.State().Nodes[name]; !ok {
		return fmt.Errorf("%w: %q", ErrNodeUnknown, name)
	}
	idx, err := c.apply(ctx, &Command{Op: OpDeregister, Deregister: &DeregisterCmd{Name: name, Reason: "removed"}})
	if err != nil {
		return err
	}
	c.log.Info("node removed", "peer", name, "index", idx)
	return nil
}

// Leave leaves the cluster gracefully: deregister in Raft (so every peer
// drops this host), give up the Raft vote, leave gossip, stop, and forget
// the identity so that coming back needs a new token.
func (c *Cluster) Leave(ctx context.Context) error {
	if !c.Joined() {
		return ErrNotJoined
	}
	// Once deregistered, the state sync's next poll is refused: it must
	// not read that as a revocation.
	c.leaving.Store(true)
	if err := c.deregisterSelf(ctx); err != nil {
		c.leaving.Store(false)
		return fmt.Errorf("cluster: leave: %w", err)
	}
	if c.opts.Server {
		c.leaveRaft(ctx)
	}
	c.mu.Lock()
	g := c.gossip
	c.mu.Unlock()
	if g != nil {
		if err := g.leave(5 * time.Second); err != nil {
			c.log.Warn("gossip leave was not acknowledged", "err", err)
		}
	}
	err := c.Shutdown()
	if ferr := c.store.forgetIdentity(); ferr != nil {
		err = errors.Join(err, ferr)
	}
	c.mu.Lock()
	c.ident = nil
	c.mu.Unlock()
	c.log.Info("left the cluster")
	return err
}

func (c *Cluster) deregisterSelf(ctx context.Context) error {
	if c.opts.Server {
		_, err := c.apply(ctx, &Command{Op: OpDeregister, Deregister: &DeregisterCmd{Name: c.opts.Name, Reason: "left"}})
		return err
	}
	servers := c.fsm.State().Servers()
	if len(servers) == 0 {
		return ErrNoServerReached
	}
	var errs []error
	k := rand.IntN(len(servers))
	for i := range servers {
		s := servers[(k+i)%len(servers)]
		err := c.rpc.do(ctx, "POST", joinAddr(s.Addr, s.RPCPort), rpcLeave, struct{}{}, nil)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: %w", ErrNoServerReached, errors.Join(errs...))
}

// leaveRaft gives up this server's vote: a leader removes itself (and
// steps down); a follower waits for the leader to remove it.
func (c *Cluster) leaveRaft(ctx context.Context) {
	r := c.raftNode()
	if r == nil {
		return
	}
	self := raft.ServerID(c.opts.Name)
	if r.State() == raft.Leader {
		if err := r.RemoveServer(self, 0, applyTimeout).Error(); err != nil {
			c.log.Warn("raft: could not remove self", "err", err)
		}
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		f := r.GetConfiguration()
		if f.Error() != nil {
			return
		}
		found := false
		for _, s := range f.Configuration().Servers {
			found = found || s.ID == self
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.log.Warn("raft: the leader did not remove this server in time; leaving anyway")
}
