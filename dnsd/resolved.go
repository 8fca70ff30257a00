package dnsd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Resolved is split DNS with systemd-resolved: it sends the lookups of some
// domains on a link to weft's own DNS server, and only those.
type Resolved interface {
	// SetLinkDNS makes servers the DNS servers of link for domains, as
	// routing-only domains ("~domain"): only names in them go there, and
	// the link is not a default route for any other name.
	SetLinkDNS(link string, servers []netip.AddrPort, domains []string) error
	// RevertLink drops everything SetLinkDNS set on link.
	RevertLink(link string) error
}

// resolvectlTimeout bounds one resolvectl run: resolved answers over D-Bus
// in milliseconds, and a hung one must not hang the agent.
const resolvectlTimeout = 10 * time.Second

// Resolvectl is the [Resolved] that runs resolvectl(1), which must be in
// PATH. A server on port 53 is passed as a bare address, which every
// resolvectl understands; other ports need one that takes "ip:port".
type Resolvectl struct {
	// run runs a command and returns its combined output; tests replace it.
	run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// NewResolvectl returns the resolvectl-backed [Resolved].
func NewResolvectl() *Resolvectl {
	return &Resolvectl{run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, name, args...).CombinedOutput()
	}}
}

// SetLinkDNS runs, in the order systemd's VPN guide gives (routing before
// servers, so that no lookup goes to the link before it is routed):
//
//	resolvectl domain LINK ~DOMAIN...
//	resolvectl default-route LINK false
//	resolvectl dns LINK SERVER...
func (r *Resolvectl) SetLinkDNS(link string, servers []netip.AddrPort, domains []string) error {
	if link == "" {
		return errors.New("dnsd: resolved: no link")
	}
	if len(servers) == 0 || len(domains) == 0 {
		return fmt.Errorf("dnsd: resolved: link %s: need at least one server and one domain", link)
	}
	doms := make([]string, 0, len(domains))
	for _, d := range domains {
		d = strings.TrimSuffix(strings.TrimPrefix(d, "~"), ".")
		if d == "" {
			return fmt.Errorf("dnsd: resolved: link %s: empty domain", link)
		}
		doms = append(doms, "~"+d)
	}
	srvs := make([]string, 0, len(servers))
	for _, s := range servers {
		if !s.IsValid() || s.Addr().Zone() != "" {
			return fmt.Errorf("dnsd: resolved: link %s: server %v: need an address without zone and a port", link, s)
		}
		a := s.Addr().Unmap()
		if s.Port() == 53 {
			srvs = append(srvs, a.String()) // the form older resolvectl understands too
		} else {
			srvs = append(srvs, netip.AddrPortFrom(a, s.Port()).String())
		}
	}
	if err := r.resolvectl(append([]string{"domain", link}, doms...)...); err != nil {
		return err
	}
	if err := r.resolvectl("default-route", link, "false"); err != nil {
		return err
	}
	return r.resolvectl(append([]string{"dns", link}, srvs...)...)
}

// RevertLink runs resolvectl revert LINK.
func (r *Resolvectl) RevertLink(link string) error {
	if link == "" {
		return errors.New("dnsd: resolved: no link")
	}
	return r.resolvectl("revert", link)
}

func (r *Resolvectl) resolvectl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), resolvectlTimeout)
	defer cancel()
	out, err := r.run(ctx, "resolvectl", args...)
	if err != nil {
		msg := string(bytes.TrimSpace(out))
		if msg == "" {
			return fmt.Errorf("dnsd: resolvectl %s: %w", strings.Join(args, " "), err)
		}
		return fmt.Errorf("dnsd: resolvectl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}
