package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/policy"
)

func (a *Agent) handleApplyPolicy(w http.ResponseWriter, r *http.Request) {
	var req client.PolicyRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	by := req.By
	if by == "" {
		by = "admin API on " + a.config().NodeName
	}
	v, err := a.cluster.ApplyPolicy(ctx, req.Filename, req.Source, by)
	if err != nil {
		writeErr(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, client.PolicyApplied{Version: v})
}

func (a *Agent) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	p := a.cluster.State().Policy
	if p == nil {
		writeErr(w, http.StatusNotFound, errors.New("no policy has been applied"))
		return
	}
	writeJSON(w, http.StatusOK, client.Policy{Version: p.Version, Filename: p.Filename, Source: p.Source, AppliedAt: p.AppliedAt, AppliedBy: p.AppliedBy})
}

// handlePlanPolicy shows, per host, what a document would change compared
// with the applied one. Nothing is committed. Addresses are allocated as
// the servers would; hosts that would need a new key are shown with a
// placeholder one.
func (a *Agent) handlePlanPolicy(w http.ResponseWriter, r *http.Request) {
	var req client.PolicyRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	st := a.cluster.State()
	next, err := policy.Parse(req.Filename, []byte(req.Source))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	hosts := st.PolicyHosts()
	if err := next.Check(hosts); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	cur, err := st.Document()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	nextHosts, err := previewHosts(next, hosts)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	var version uint64
	if st.Policy != nil {
		version = st.Policy.Version
	}
	out := client.PolicyPlan{Hosts: []client.HostChanges{}}
	for _, h := range hosts {
		var before *policy.Plan
		if cur != nil {
			if before, err = policy.Compile(cur, hosts, h.Name, version); err != nil {
				writeErr(w, http.StatusInternalServerError, err)
				return
			}
		}
		after, err := policy.Compile(next, nextHosts, h.Name, version+1)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		changes := policy.Diff(before, after)
		if changes == nil {
			changes = []string{}
		}
		out.Hosts = append(out.Hosts, client.HostChanges{Name: h.Name, Changes: changes})
	}
	writeJSON(w, http.StatusOK, out)
}

// previewKey stands in for keys hosts will make once the policy is applied.
const previewKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// previewHosts returns hosts as they would be after applying doc: IPAM
// run, and a placeholder key wherever a host has none yet.
func previewHosts(doc *policy.Document, hosts []policy.Host) ([]policy.Host, error) {
	current := map[string]map[string]netip.Addr{}
	for _, h := range hosts {
		for seg, hs := range h.Segments {
			if hs.Addr.IsValid() {
				if current[seg] == nil {
					current[seg] = map[string]netip.Addr{}
				}
				current[seg][h.Name] = hs.Addr
			}
		}
	}
	alloc, err := policy.Allocate(doc, hosts, current)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Host, len(hosts))
	for i, h := range hosts {
		h.Segments = map[string]policy.HostSegment{}
		for seg, byHost := range alloc {
			addr, ok := byHost[h.Name]
			if !ok {
				continue
			}
			key := hosts[i].Segments[seg].PublicKey
			if key == "" {
				key = previewKey
			}
			h.Segments[seg] = policy.HostSegment{PublicKey: key, Addr: addr}
		}
		out[i] = h
	}
	return out, nil
}

func (a *Agent) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, to, port := q.Get("from"), q.Get("to"), q.Get("port")
	proto, num, err := parseProtoPort(port)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	st := a.cluster.State()
	doc, err := st.Document()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if doc == nil {
		writeErr(w, http.StatusNotFound, errors.New("no policy has been applied"))
		return
	}
	e := policy.Explain(doc, st.PolicyHosts(), from, to, proto, num)
	writeJSON(w, http.StatusOK, client.Explanation{From: from, To: to, Port: port, Allowed: e.Allowed, Segment: e.Segment, Rule: e.Rule, Reason: e.Reason})
}

// parseProtoPort reads "tcp/5432", "udp/53" or "icmp".
func parseProtoPort(s string) (string, uint16, error) {
	proto, port, hasPort := strings.Cut(strings.ToLower(s), "/")
	switch proto {
	case "icmp":
		if hasPort {
			return "", 0, fmt.Errorf("%w: icmp takes no port", errBadRequest)
		}
		return proto, 0, nil
	case "tcp", "udp":
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", 0, fmt.Errorf("%w: port %q: want tcp/N, udp/N or icmp", errBadRequest, s)
		}
		return proto, uint16(n), nil
	}
	return "", 0, fmt.Errorf("%w: %q: want tcp/N, udp/N or icmp", errBadRequest, s)
}

func (a *Agent) handleSegments(w http.ResponseWriter, r *http.Request) {
	if a.dataplane == nil {
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("the dataplane is not running: %s", a.dataplaneErr))
		return
	}
	segs, err := a.dataplane.status()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := []client.Segment{}
	for _, s := range segs {
		cs := client.Segment{Name: s.Name, Interface: s.Interface, Role: string(s.Role), Address: s.Address.String(), ListenPort: s.ListenPort, PublicKey: s.PublicKey, Peers: []client.SegmentPeer{}}
		for _, p := range s.Peers {
			cp := client.SegmentPeer{Name: p.Name, PublicKey: p.PublicKey, Endpoint: p.Endpoint, LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, TxBytes: p.TxBytes, AllowedIPs: []string{}}
			for _, ip := range p.AllowedIPs {
				cp.AllowedIPs = append(cp.AllowedIPs, ip.String())
			}
			cs.Peers = append(cs.Peers, cp)
		}
		out = append(out, cs)
	}
	writeJSON(w, http.StatusOK, out)
}
