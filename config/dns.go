package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

const (
	dnsPort = 53 // of a dns.upstreams address given without one
	// maxDNSTTL bounds how long a resolver may keep answering with a node
	// that has left or a service that has failed its check.
	maxDNSTTL = time.Hour
)

// buildDNS applies the defaults to the merged dns block and parses its
// addresses. Lists keep the order they were written in: it is the order of
// the upstreams, and check reports a bad element by its position.
func buildDNS(f *dnsFile, domain string, bad report) DNS {
	d := DNS{
		Enabled: true,
		Listen:  []netip.AddrPort{netip.MustParseAddrPort(DefaultDNSListen)},
		Domain:  domain,
		TTL:     DefaultDNSTTL,
	}
	if f == nil {
		return d
	}
	setBool(&d.Enabled, f.Enabled)
	setString(&d.Domain, f.Domain)
	setBool(&d.Resolved, f.Resolved)
	parseDuration(&d.TTL, f.TTL, keyDNSTTL, "Invalid dns.ttl", "", bad)

	if f.Listen != nil {
		d.Listen = nil
		for i, s := range *f.Listen {
			ap, err := netip.ParseAddrPort(s)
			if err != nil {
				bad(elem(keyDNSListen, i), "Invalid dns.listen", fmt.Sprintf(
					"%q is not \"ip:port\": the host must be an IP address, such as 127.0.0.1:8600 or [::1]:8600", s))
				continue
			}
			d.Listen = append(d.Listen, ap)
		}
	}
	if f.Upstreams != nil {
		for i, s := range *f.Upstreams {
			ap, ok := parseDNSUpstream(s)
			if !ok {
				bad(elem(keyDNSUpstreams, i), "Invalid dns.upstreams", fmt.Sprintf(
					"%q is not \"ip:port\" or \"ip\" (the port is then 53): the host must be an IP address", s))
				continue
			}
			d.Upstreams = append(d.Upstreams, ap)
		}
	}
	if f.AllowFrom != nil {
		for i, s := range *f.AllowFrom {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				detail := fmt.Sprintf("%q is not a network in CIDR notation, such as 10.0.0.0/8", s)
				if a, err := netip.ParseAddr(s); err == nil {
					detail += fmt.Sprintf("; for this one address write %s/%d", a, a.BitLen())
				}
				bad(elem(keyDNSAllowFrom, i), "Invalid dns.allow_from", detail)
				continue
			}
			// 10.1.2.3/8 means 10.0.0.0/8: the host bits are not a second
			// intent worth refusing the config over.
			d.AllowFrom = append(d.AllowFrom, p.Masked())
		}
	}
	return d
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

func elem(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }

// parseDNSUpstream parses "ip:port", or "ip" with the port 53.
func parseDNSUpstream(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, dnsPort), true
	}
	return netip.AddrPort{}, false
}

// dns checks the dns block. domain is the top-level domain, which
// dns.domain defaults to and which is checked on its own.
func (c *checker) dns(d DNS, domain string) {
	if d.Enabled && len(d.Listen) == 0 && c.want(keyDNSListen) {
		c.add(keyDNSListen, "Missing dns.listen", "dns is enabled, so it needs at least one \"ip:port\" to listen on; to turn it off, set enabled = false")
	}
	for i, ap := range d.Listen {
		if !c.want(keyDNSListen) {
			break
		}
		if why := addrPortProblem(ap); why != "" {
			c.add(elem(keyDNSListen, i), "Invalid dns.listen", fmt.Sprintf("%s: %s", ap, why))
		}
	}

	// Unset, dns.domain is the top-level domain, which is checked on its
	// own; disabled, it matters only if a file wrote it.
	if c.want(keyDNSDomain) && (c.src.set(keyDNSDomain) || d.Enabled && d.Domain != domain) {
		if why := dnsNameProblem(d.Domain); why != "" {
			c.add(keyDNSDomain, "Invalid dns.domain", fmt.Sprintf("%q is not a DNS name: %s", d.Domain, why))
		}
	}

	for i, u := range d.Upstreams {
		if !c.want(keyDNSUpstreams) {
			break
		}
		if why := addrPortProblem(u); why != "" {
			c.add(elem(keyDNSUpstreams, i), "Invalid dns.upstreams", fmt.Sprintf("%s: %s", u, why))
			continue
		}
		if !d.Enabled || !c.want(keyDNSListen) {
			continue
		}
		for _, l := range d.Listen {
			if l.Port() == u.Port() && (l.Addr() == u.Addr() || (covers(l.Addr(), u.Addr()) && u.Addr().IsLoopback())) {
				c.add(elem(keyDNSUpstreams, i), "Invalid dns.upstreams", fmt.Sprintf(
					"%s is where this agent's DNS server listens (dns.listen %s): queries would loop", u, l))
				break
			}
		}
	}

	for i, p := range d.AllowFrom {
		if c.want(keyDNSAllowFrom) && !p.IsValid() {
			c.add(elem(keyDNSAllowFrom, i), "Invalid dns.allow_from", "not a network in CIDR notation, such as 10.0.0.0/8")
		}
	}

	if c.want(keyDNSTTL) {
		switch {
		case d.TTL < 0 || d.TTL > maxDNSTTL:
			c.add(keyDNSTTL, "Invalid dns.ttl", fmt.Sprintf("%s is not in 0s..1h", d.TTL))
		case d.TTL%time.Second != 0:
			c.add(keyDNSTTL, "Invalid dns.ttl", fmt.Sprintf("%s is not a whole number of seconds, which is all a DNS TTL can hold", d.TTL))
		}
	}

	if d.Resolved && !d.Enabled && c.want(keyDNSResolved, keyDNSEnabled) {
		c.add(keyDNSResolved, "Invalid dns.resolved", "resolved = true sends the domain's queries to this agent's DNS server, but enabled = false turns it off: set one of them the other way")
	}
}

// addrPortProblem says why ap cannot be a DNS server's address, or "". It
// catches what a Runtime built in code can hold and a file cannot.
func addrPortProblem(ap netip.AddrPort) string {
	switch {
	case !ap.Addr().IsValid():
		return "not an IP address"
	case ap.Port() == 0:
		return "port 0 is not in 1..65535"
	}
	return ""
}

// metrics checks the metrics block.
func (c *checker) metrics(m Metrics) {
	if m.Listen == "" || !c.want(keyMetricsListen) {
		return
	}
	if why := listenProblem(m.Listen); why != "" {
		c.add(keyMetricsListen, "Invalid metrics.listen", fmt.Sprintf("%q: %s", m.Listen, why))
	}
}

// listens reports two of the agent's own TCP listeners on one address:
// dns.listen, metrics.listen and the services' upstreams. The second could
// not start.
func (c *checker) listens(r Runtime) {
	type listener struct {
		key, setKey string // where to report it; the key a file sets
		name, addr  string
	}
	var all []listener
	if r.DNS.Enabled && c.want(keyDNSListen) {
		for i, ap := range r.DNS.Listen {
			all = append(all, listener{elem(keyDNSListen, i), keyDNSListen, "dns.listen", ap.String()})
		}
	}
	if r.Metrics.Listen != "" && c.want(keyMetricsListen) {
		all = append(all, listener{keyMetricsListen, keyMetricsListen, "metrics.listen", r.Metrics.Listen})
	}
	for _, s := range r.Services {
		for _, u := range s.Upstreams {
			key := upstreamKey(s.Name, u.Service) + subListen
			if u.Listen != "" && c.want(key) {
				all = append(all, listener{key, key, fmt.Sprintf("service %q upstream %q", s.Name, u.Service), u.Listen})
			}
		}
	}
	for i, a := range all {
		for _, b := range all[:i] {
			if !sameListener(a.addr, b.addr) {
				continue
			}
			// Point at the one a file set; if both were, at the later one.
			at, other := a, b
			if !c.src.set(a.setKey) && c.src.set(b.setKey) {
				at, other = b, a
			}
			c.add(at.key, "Duplicate listen address", fmt.Sprintf(
				"%s (%s) and %s (%s) cannot both listen there: give each its own address", other.name, other.addr, at.name, at.addr))
			break
		}
	}
}

// sameListener reports whether listening on a and on b would collide: the
// same address, or the same port where one of them is a wildcard that takes
// the other's address too.
func sameListener(a, b string) bool {
	pa, errA := netip.ParseAddrPort(a)
	pb, errB := netip.ParseAddrPort(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	if pa.Port() != pb.Port() {
		return false
	}
	return pa.Addr() == pb.Addr() || covers(pa.Addr(), pb.Addr()) || covers(pb.Addr(), pa.Addr())
}

// covers reports whether a listener on wild also takes other's address:
// 0.0.0.0 takes every IPv4 address, and :: (dual-stack in Go) every address.
func covers(wild, other netip.Addr) bool {
	return wild.IsUnspecified() && (wild.Is6() || other.Unmap().Is4())
}
