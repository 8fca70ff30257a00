package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weft-mesh/weft/config"
	"github.com/weft-mesh/weft/dnsd"
)

// startDNS starts the DNS server as cfg says (nothing when disabled). A
// listener that cannot bind is an error: the operator set it.
func (a *Agent) startDNS(cfg config.DNS) error {
	if !cfg.Enabled {
		return nil
	}
	srv, err := dnsd.New(dnsd.Options{
		Listen:    cfg.Listen,
		AllowFrom: cfg.AllowFrom,
		Upstreams: cfg.Upstreams,
		Logger:    a.log.With("subsystem", "dns"),
		Observe:   a.metrics.observeDNS,
	})
	if err != nil {
		return fmt.Errorf("agent: dns: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("agent: dns: %w (set dns { listen = [...] } or dns { enabled = false })", err)
	}
	a.dnsMu.Lock()
	a.dns = srv
	a.dnsMu.Unlock()
	a.log.Info("dns listening", "addr", fmt.Sprint(srv.Addrs()), "domain", cfg.Domain)
	return nil
}

func (a *Agent) stopDNS() {
	a.dnsMu.Lock()
	srv := a.dns
	a.dns = nil
	a.dnsMu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	a.unregisterResolved()
}

// restartDNS applies new DNS settings. Domain and TTL only change the
// table; listeners, upstreams and the ACL need a new server, which is
// started before the old one stops where the addresses allow it.
func (a *Agent) restartDNS(prev, next config.DNS) error {
	if prev.Enabled == next.Enabled && slices.Equal(prev.Listen, next.Listen) &&
		slices.Equal(prev.Upstreams, next.Upstreams) && slices.Equal(prev.AllowFrom, next.AllowFrom) {
		if !next.Resolved {
			a.unregisterResolved()
		}
		return nil // domain, ttl, resolved: the feed picks them up
	}
	a.stopDNS()
	return a.startDNS(next)
}

func (a *Agent) dnsServer() *dnsd.Server {
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	return a.dns
}

func (a *Agent) dnsConfig() (string, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rt.DNS.Domain, a.rt.DNS.TTL
}

// resolvedLinks registers the mesh domain with systemd-resolved on the
// given weft interfaces (split DNS: only mesh names go to weft), when
// dns { resolved = true }.
func (a *Agent) resolvedLinks(links []string) {
	a.mu.Lock()
	cfg := a.rt.DNS
	a.mu.Unlock()
	if !cfg.Resolved || !cfg.Enabled {
		return
	}
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	if a.dnsLinks == nil {
		a.dnsLinks = map[string]bool{}
	}
	want := map[string]bool{}
	var errs []error
	for _, l := range links {
		want[l] = true
		if a.dnsLinks[l] {
			continue
		}
		if err := a.resolved.SetLinkDNS(l, cfg.Listen, []string{"~" + cfg.Domain}); err != nil {
			errs = append(errs, err)
			continue
		}
		a.dnsLinks[l] = true
		a.log.Info("registered the mesh domain with systemd-resolved", "iface", l, "domain", cfg.Domain)
	}
	for l := range a.dnsLinks {
		if !want[l] {
			_ = a.resolved.RevertLink(l) // the link is gone with its segment
			delete(a.dnsLinks, l)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.dnsErr = "systemd-resolved: " + err.Error()
	} else {
		a.dnsErr = ""
	}
}

func (a *Agent) unregisterResolved() {
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	for l := range a.dnsLinks {
		_ = a.resolved.RevertLink(l)
		delete(a.dnsLinks, l)
	}
}
