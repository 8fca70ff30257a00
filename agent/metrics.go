package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weft-mesh/weft/cluster"
)

// metrics are the agent's Prometheus metrics, in a private registry served
// on metrics { listen } (never on the admin socket's caller-facing paths).
// Most are read when scraped (a collector over the live state), so they
// cost nothing between scrapes; DNS and Raft commit latency are observed
// as they happen.
type metrics struct {
	reg        *prometheus.Registry
	dnsQueries *prometheus.CounterVec
	dnsLatency prometheus.Histogram
	raftCommit prometheus.Histogram
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_dns_queries_total", Help: "DNS queries answered, by query type and response code.",
		}, []string{"type", "rcode"}),
		dnsLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_dns_query_duration_seconds", Help: "Time to answer a DNS query.",
			Buckets: prometheus.ExponentialBuckets(0.00002, 2, 14),
		}),
		raftCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_raft_commit_duration_seconds", Help: "Time from proposing a Raft write on this server to its being applied.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	m.reg.MustRegister(m.dnsQueries, m.dnsLatency, m.raftCommit, &stateCollector{a: a},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeDNS(qtype uint16, rcode int, took time.Duration) {
	t, ok := dns.TypeToString[qtype]
	if !ok {
		t = "other"
	}
	r, ok := dns.RcodeToString[rcode]
	if !ok {
		r = strconv.Itoa(rcode)
	}
	m.dnsQueries.WithLabelValues(t, r).Inc()
	m.dnsLatency.Observe(took.Seconds())
}

func (m *metrics) observeCommit(d time.Duration) { m.raftCommit.Observe(d.Seconds()) }

var (
	descMembers       = prometheus.NewDesc("weft_members", "Hosts of the cluster by gossip status.", []string{"status"}, nil)
	descRaftState     = prometheus.NewDesc("weft_raft_state", "1 for this server's current Raft state.", []string{"state"}, nil)
	descLeaderChanges = prometheus.NewDesc("weft_raft_leader_changes_total", "Leader changes this server has observed.", nil, nil)
	descHasLeader     = prometheus.NewDesc("weft_raft_has_leader", "1 when this server knows a Raft leader.", nil, nil)
	descStateIndex    = prometheus.NewDesc("weft_state_index", "The state index this agent has applied.", nil, nil)
	descPolicy        = prometheus.NewDesc("weft_policy_version_applied", "The policy version this host's dataplane enforces.", nil, nil)
	descHandshake     = prometheus.NewDesc("weft_peer_last_handshake_age_seconds", "Seconds since the last WireGuard handshake with a peer (absent if never).", []string{"segment", "peer"}, nil)
	descPeerRx        = prometheus.NewDesc("weft_peer_receive_bytes_total", "Bytes received from a WireGuard peer.", []string{"segment", "peer"}, nil)
	descPeerTx        = prometheus.NewDesc("weft_peer_transmit_bytes_total", "Bytes sent to a WireGuard peer.", []string{"segment", "peer"}, nil)
	descRulePackets   = prometheus.NewDesc("weft_rule_packets_total", "Packets matched by a firewall rule (allowed or denied, by the rule's action).", []string{"rule", "action"}, nil)
	descRuleBytes     = prometheus.NewDesc("weft_rule_bytes_total", "Bytes matched by a firewall rule.", []string{"rule", "action"}, nil)
	descCertExpiry    = prometheus.NewDesc("weft_cert_expiry_seconds", "Seconds until a certificate of this host expires.", []string{"cert"}, nil)
	descReady         = prometheus.NewDesc("weft_ready", "1 when every health check of this agent passes.", nil, nil)
)

// stateCollector reads the agent's live state at scrape time.
type stateCollector struct{ a *Agent }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descRaftState, descLeaderChanges, descHasLeader, descStateIndex, descPolicy,
		descHandshake, descPeerRx, descPeerTx, descRulePackets, descRuleBytes, descCertExpiry, descReady} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	byStatus := map[string]float64{cluster.StatusAlive: 0, cluster.StatusDead: 0, cluster.StatusUnknown: 0}
	var policyVersion uint64
	self := a.config().NodeName
	for _, m := range a.cluster.Members() {
		byStatus[m.Status]++
		if m.Name == self {
			policyVersion = m.PolicyVersion
		}
	}
	for s, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, n, s)
	}
	st := a.cluster.Status()
	if st.RaftState != "" {
		for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
			v := 0.0
			if s == st.RaftState {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, strings.ToLower(s))
		}
		hasLeader := 0.0
		if st.Leader != "" {
			hasLeader = 1
		}
		ch <- prometheus.MustNewConstMetric(descHasLeader, prometheus.GaugeValue, hasLeader)
		ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(a.cluster.LeaderChanges()))
	}
	ch <- prometheus.MustNewConstMetric(descStateIndex, prometheus.GaugeValue, float64(st.StateIndex))
	ch <- prometheus.MustNewConstMetric(descPolicy, prometheus.GaugeValue, float64(policyVersion))
	ready := 0.0
	if a.status().Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)

	now := time.Now()
	node, ca := a.cluster.Expiry()
	for name, t := range map[string]time.Time{"node": node, "ca": ca} {
		if !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, t.Sub(now).Seconds(), name)
		}
	}
	if a.dataplane == nil {
		return
	}
	if segs, err := a.dataplane.status(); err == nil {
		for _, s := range segs {
			for _, p := range s.Peers {
				if !p.LastHandshake.IsZero() {
					ch <- prometheus.MustNewConstMetric(descHandshake, prometheus.GaugeValue, now.Sub(p.LastHandshake).Seconds(), s.Name, p.Name)
				}
				ch <- prometheus.MustNewConstMetric(descPeerRx, prometheus.CounterValue, float64(p.RxBytes), s.Name, p.Name)
				ch <- prometheus.MustNewConstMetric(descPeerTx, prometheus.CounterValue, float64(p.TxBytes), s.Name, p.Name)
			}
		}
	}
	if counters, err := a.dataplane.overlay.Counters(); err == nil {
		actions := a.dataplane.ruleActions()
		for name, ctr := range counters {
			action := actions[name]
			if action == "" {
				action = "deny" // the default-deny counter
			}
			ch <- prometheus.MustNewConstMetric(descRulePackets, prometheus.CounterValue, float64(ctr.Packets), name, action)
			ch <- prometheus.MustNewConstMetric(descRuleBytes, prometheus.CounterValue, float64(ctr.Bytes), name, action)
		}
	}
}

// serveMetrics listens on metrics { listen } (when set): /metrics,
// /v1/health, /v1/ready and the read-only status page (/, /ui/, /v1/mesh).
func (a *Agent) serveMetrics(addr string) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("GET /v1/ready", a.handleReady)
	a.registerStatusPage(mux) // the status page: /, /ui/ and /v1/mesh
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics listener stopped", "err", err)
		}
	}()
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	return srv, nil
}

func stopServer(srv *http.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
