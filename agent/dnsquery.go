package agent

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/weft-mesh/weft/client"
)

// handleDNSQuery answers `weft dns query`: a real query to this agent's
// own resolver, so the operator sees exactly what applications get.
func (a *Agent) handleDNSQuery(w http.ResponseWriter, r *http.Request) {
	srv := a.dnsServer()
	if srv == nil || len(srv.Addrs()) == 0 {
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("dns is not enabled on this agent"))
		return
	}
	name := r.URL.Query().Get("name")
	qtype := strings.ToUpper(r.URL.Query().Get("type"))
	if qtype == "" {
		qtype = "A"
	}
	t, ok := dns.StringToType[qtype]
	if !ok || name == "" {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%w: want a name and a record type such as A, AAAA, SRV, PTR", errBadRequest))
		return
	}
	if _, ok := dns.IsDomainName(name); !ok {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%w: %q is not a domain name", errBadRequest, name))
		return
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.SetEdns0(4096, false)
	addr := srv.Addrs()[0].String()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	resp, _, err := c.ExchangeContext(r.Context(), m, addr)
	if err != nil {
		writeErr(w, http.StatusBadGateway, fmt.Errorf("dns query to %s: %w", addr, err))
		return
	}
	out := client.DNSAnswer{Server: addr, Rcode: dns.RcodeToString[resp.Rcode], Answer: []string{}, Authority: []string{}, Additional: []string{}}
	for _, rr := range resp.Answer {
		out.Answer = append(out.Answer, rr.String())
	}
	for _, rr := range resp.Ns {
		out.Authority = append(out.Authority, rr.String())
	}
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			out.Additional = append(out.Additional, rr.String())
		}
	}
	writeJSON(w, http.StatusOK, out)
}
