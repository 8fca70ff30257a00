package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/internal/version"
)

// The admin API: HTTP+JSON on the agent's unix socket. Its JSON shapes are
// the client package's. No response ever carries a key or a token, except
// the new token of POST /v1/tokens.
func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", a.handleMembers)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/nodes", a.handleNodes)
	mux.HandleFunc("DELETE /v1/nodes/{name}", a.handleRemoveNode)
	mux.HandleFunc("POST /v1/tokens", a.handleCreateToken)
	mux.HandleFunc("POST /v1/join", a.handleJoin)
	mux.HandleFunc("POST /v1/leave", a.handleLeave)
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("GET /v1/ready", a.handleReady)
	mux.HandleFunc("GET /v1/policy", a.handleGetPolicy)
	mux.HandleFunc("POST /v1/policy", a.handleApplyPolicy)
	mux.HandleFunc("POST /v1/policy/plan", a.handlePlanPolicy)
	mux.HandleFunc("GET /v1/policy/explain", a.handleExplain)
	mux.HandleFunc("GET /v1/segments", a.handleSegments)
	mux.HandleFunc("GET /v1/flows", a.handleFlows)
	mux.HandleFunc("GET /v1/dns/query", a.handleDNSQuery)
	// pprof only here, on the admin socket: never on a network listener.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, client.Error{Error: err.Error()})
}

// statusFor maps cluster errors to HTTP statuses.
func statusFor(err error) int {
	switch {
	case errors.Is(err, cluster.ErrNotServer), errors.Is(err, cluster.ErrNotJoined), errors.Is(err, cluster.ErrAlreadyJoined):
		return http.StatusConflict
	case errors.Is(err, cluster.ErrNodeUnknown):
		return http.StatusNotFound
	case errors.Is(err, cluster.ErrNoServerReached), errors.Is(err, cluster.ErrNotLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, cluster.ErrTokenFormat), errors.Is(err, errBadRequest), errors.Is(err, cluster.ErrBadPolicy), errors.Is(err, cluster.ErrInvalid):
		return http.StatusBadRequest
	}
	var re *cluster.RemoteError
	if errors.As(err, &re) {
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

var errBadRequest = errors.New("bad request")

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	out := []client.Member{}
	for _, m := range a.cluster.Members() {
		out = append(out, client.Member{
			Name: m.Name, Addr: m.Addr, GossipPort: m.GossipPort, RPCPort: m.RPCPort, Role: string(m.Role),
			Status: m.Status, StateIndex: m.StateIndex, PolicyVersion: m.PolicyVersion, Tags: nonNil(m.Tags),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) status() client.Status {
	s := a.cluster.Status()
	out := client.Status{
		Node: s.Node, Role: string(s.Role), Domain: s.Domain, Joined: s.Joined, Leader: s.Leader,
		RaftState: s.RaftState, StateIndex: s.StateIndex, Ready: s.Ready(), Version: version.Version,
	}
	for _, p := range s.RaftPeers {
		out.RaftPeers = append(out.RaftPeers, client.RaftPeer{ID: p.ID, Address: p.Address, Voter: p.Voter})
	}
	for _, c := range s.Checks {
		if c.Name == "joined" && !c.OK {
			if p := a.joinErr.Load(); p != nil && *p != "" {
				c.Reason = "join failed: " + *p
			}
		}
		out.Checks = append(out.Checks, client.Check{Name: c.Name, OK: c.OK, Reason: c.Reason})
	}
	dc := client.Check{Name: "dataplane", OK: true}
	if a.dataplane == nil {
		dc.OK, dc.Reason = false, a.dataplaneErr
	} else {
		dc.OK, dc.Reason = a.dataplane.check()
	}
	out.Checks = append(out.Checks, dc)
	out.Ready = out.Ready && dc.OK
	a.mu.Lock()
	dnsOn := a.rt.DNS.Enabled
	a.mu.Unlock()
	if dnsOn {
		a.dnsMu.Lock()
		nc := client.Check{Name: "dns", OK: a.dns != nil && a.dnsErr == "", Reason: a.dnsErr}
		if a.dns == nil && nc.Reason == "" {
			nc.Reason = "not listening"
		}
		a.dnsMu.Unlock()
		out.Checks = append(out.Checks, nc)
		out.Ready = out.Ready && nc.OK
	}
	return out
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.status())
}

func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) {
	out := []client.Node{}
	for _, n := range a.cluster.Nodes() {
		cn := client.Node{Name: n.Name, Role: string(n.Role), Addr: n.Addr, Tags: nonNil(n.Tags), Serials: []string{}, RegisteredIndex: n.RegisteredIndex}
		for _, c := range n.Certs {
			cn.Serials = append(cn.Serials, c.Serial)
		}
		out = append(out, cn)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) handleRemoveNode(w http.ResponseWriter, r *http.Request) {
	if err := a.cluster.RemoveNode(r.Context(), r.PathValue("name")); err != nil {
		writeErr(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	req := client.TokenRequest{TTL: "1h", Uses: 1}
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("ttl: %w", err))
		return
	}
	tok, err := a.cluster.CreateToken(r.Context(), cluster.TokenRequest{Server: req.Server, TTL: ttl, Uses: req.Uses})
	if err != nil {
		writeErr(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, client.Token{Token: tok.Token, Expires: tok.Expires, Uses: tok.Uses, Server: tok.Server})
}

func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req client.JoinRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	addrs := req.Addresses
	if len(addrs) == 0 {
		a.mu.Lock()
		addrs = a.rt.Join.Addresses
		a.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	if err := a.join(ctx, req.Token, addrs); err != nil {
		writeErr(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) handleLeave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	if err := a.leave(ctx); err != nil {
		writeErr(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	s := a.status()
	writeJSON(w, http.StatusOK, client.Health{OK: true, Checks: s.Checks})
}

func (a *Agent) handleReady(w http.ResponseWriter, r *http.Request) {
	s := a.status()
	code := http.StatusOK
	if !s.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, client.Health{OK: s.Ready, Checks: s.Checks})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
