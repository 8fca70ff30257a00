package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/identity"
)

// OpLocal updates a node's own tags and services.
const OpLocal Op = "local"

// LocalCmd is what a node declares about itself: its tags and services.
// Only the node itself sends it, over its authenticated RPC.
type LocalCmd struct {
	Name     string    `json:"name"`
	Tags     []string  `json:"tags"`
	Services []Service `json:"services"`
}

// localDecl is what this host's config declares now.
type localDecl struct {
	Tags     []string
	Services []Service
}

var (
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	tagRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
)

// validateLocal checks tags and services as a server receives them.
func validateLocal(tags []string, services []Service) error {
	for _, t := range tags {
		if !tagRe.MatchString(t) {
			return fmt.Errorf("%w: tag %q", ErrBadCommand, t)
		}
	}
	seen := map[string]bool{}
	for _, s := range services {
		if !labelRe.MatchString(s.Name) || seen[s.Name] {
			return fmt.Errorf("%w: service name %q", ErrBadCommand, s.Name)
		}
		seen[s.Name] = true
		if s.Port < 1 || s.Port > 65535 {
			return fmt.Errorf("%w: service %q port %d", ErrBadCommand, s.Name, s.Port)
		}
		for _, t := range s.Tags {
			if !tagRe.MatchString(t) {
				return fmt.Errorf("%w: service %q tag %q", ErrBadCommand, s.Name, t)
			}
		}
	}
	return nil
}

func applyLocal(st *State, c *LocalCmd) error {
	n, ok := st.Nodes[c.Name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNodeUnknown, c.Name)
	}
	if err := validateLocal(c.Tags, c.Services); err != nil {
		return err
	}
	nc := *n
	nc.Tags, nc.Services = slices.Clone(c.Tags), slices.Clone(c.Services)
	st.Nodes[c.Name] = &nc
	reallocateAfter(st) // tags and services decide segment membership
	return nil
}

// SetLocal declares this host's tags and services (after a reload); the
// registry is brought in line in the background.
func (c *Cluster) SetLocal(tags []string, services []Service) {
	c.local.Store(&localDecl{Tags: slices.Clone(tags), Services: slices.Clone(services)})
	select {
	case c.localChanged <- struct{}{}:
	default:
	}
}

// SetFailing announces in gossip which of this host's services fail their
// health checks.
func (c *Cluster) SetFailing(services []string) {
	f := slices.Clone(services)
	slices.Sort(f)
	c.failing.Store(&f)
	c.failingVersion.Add(1)
	c.kickMeta()
}

// localLoop keeps this node's registry entry equal to what it declares:
// at start (the config may have changed while the agent was down) and
// after every reload.
func (c *Cluster) localLoop(ctx context.Context) {
	backoff := time.Second
	for {
		st := c.fsm.State()
		want := c.local.Load()
		n, registered := st.Nodes[c.opts.Name]
		if registered && !(slices.Equal(n.Tags, want.Tags) && slices.EqualFunc(n.Services, want.Services, sameService)) {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.sendLocal(rctx, &LocalCmd{Name: c.opts.Name, Tags: want.Tags, Services: want.Services})
			cancel()
			if err == nil {
				c.log.Info("registered this host's tags and services", "tags", strings.Join(want.Tags, ","), "services", len(want.Services))
				backoff = time.Second
			} else {
				c.log.Warn("could not register this host's tags and services; will retry", "err", err)
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
		}
		wait, cancel := context.WithTimeout(ctx, 30*time.Second)
		select {
		case <-c.localChanged:
		case <-wait.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

func sameService(a, b Service) bool {
	return a.Name == b.Name && a.Port == b.Port && slices.Equal(a.Tags, b.Tags)
}

func (c *Cluster) sendLocal(ctx context.Context, cmd *LocalCmd) error {
	if c.opts.Server {
		_, err := c.apply(ctx, &Command{Op: OpLocal, Local: cmd})
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
		err := c.rpc.do(ctx, "POST", joinAddr(s.Addr, s.RPCPort), rpcLocal, cmd, nil)
		if err == nil {
			return nil
		}
		var re *RemoteError
		if errors.As(err, &re) && re.Status != http.StatusServiceUnavailable {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: %w", ErrNoServerReached, errors.Join(errs...))
}

func (c *Cluster) handleLocal(w http.ResponseWriter, r *http.Request) {
	id, err := c.peer(r, identity.KindNode, identity.KindServer)
	if err != nil {
		writeError(w, err)
		return
	}
	var req LocalCmd
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	req.Name = id.Name // a host declares only itself
	if err := validateLocal(req.Tags, req.Services); err != nil {
		writeError(w, err)
		return
	}
	idx, err := c.apply(r.Context(), &Command{Op: OpLocal, Local: &req})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Index: idx})
}
