package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewLinks returns the Links of this host (rtnetlink).
func NewLinks() Links { return netlinkLinks{} }

type netlinkLinks struct{}

func (netlinkLinks) SetAddress(iface string, addr netip.Prefix) error {
	if !addr.IsValid() {
		return fmt.Errorf("address of %s: invalid prefix", iface)
	}
	l, err := linkByName(iface)
	if err != nil {
		return err
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("addresses of %s: %w", iface, err)
	}
	found := false
	var stale []netlink.Addr
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		switch {
		case !ok:
			continue
		case p == addr:
			found = true
		case p.Addr().Is6() && p.Addr().IsLinkLocalUnicast():
		default:
			stale = append(stale, a)
		}
	}
	// Add before removing, so the interface is never without an address
	// when only the prefix length changes.
	if !found {
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
			return fmt.Errorf("add %s to %s: %w", addr, iface, err)
		}
	}
	for _, a := range stale {
		if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove %s from %s: %w", a.IPNet, iface, err)
		}
	}
	return nil
}

func (netlinkLinks) SetUp(iface string) error {
	l, err := linkByName(iface)
	if err != nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", iface, err)
	}
	return nil
}

func (netlinkLinks) SetRoutes(iface string, routes []netip.Prefix) error {
	l, err := linkByName(iface)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	have, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("routes of %s: %w", iface, err)
	}
	want := make([]netip.Prefix, 0, len(routes))
	for _, r := range routes {
		want = append(want, r.Masked())
	}
	var present []netip.Prefix
	for _, r := range have {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		dst, ok := routeDst(r)
		if !ok {
			continue
		}
		if slices.Contains(want, dst) {
			present = append(present, dst)
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove route %s via %s: %w", dst, iface, err)
		}
	}
	for _, p := range want {
		if slices.Contains(present, p) {
			continue
		}
		err := netlink.RouteReplace(&netlink.Route{
			LinkIndex: idx,
			Dst:       ipNet(p),
			Scope:     netlink.SCOPE_LINK,
			Protocol:  unix.RTPROT_STATIC,
			Table:     unix.RT_TABLE_MAIN,
		})
		if err != nil {
			return fmt.Errorf("add route %s via %s: %w", p, iface, err)
		}
	}
	return nil
}

// routeDst is a route's destination; a default route has none in netlink.
func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst != nil {
		return prefixOf(r.Dst)
	}
	if r.Family == unix.AF_INET6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	return prefixOfIPNet(*n)
}

func ipNet(p netip.Prefix) *net.IPNet {
	n := ipNetOf(p)
	return &n
}
