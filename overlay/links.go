package overlay

import "net/netip"

// Links manages the addresses, state and routes of an interface.
//
// Each call states the whole desired state and is idempotent: the real
// implementation changes nothing when the interface already matches, so
// the first Apply after a restart may call it on live interfaces without
// disturbing them.
type Links interface {
	// SetAddress makes addr the interface's only address (IPv6 link-local
	// addresses the kernel assigns are left alone).
	SetAddress(iface string, addr netip.Prefix) error
	// SetUp sets the interface up.
	SetUp(iface string) error
	// SetRoutes makes routes exactly the routes via iface in the main
	// table: missing ones are added, others via iface removed. The
	// kernel's own routes (the connected route of an address) are not
	// touched.
	SetRoutes(iface string, routes []netip.Prefix) error
}
