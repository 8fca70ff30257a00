// Package overlay applies a policy.Plan to the host: one WireGuard
// interface per segment (wf-<segment>) with its own private key, its
// address, its peers and routes, and weft's nftables table (inet weft)
// that enforces the plan's port rules on those interfaces.
//
// It owns the keys of this host (KeyStore: one per segment, generated here,
// 0600 in a 0700 directory, never sent anywhere and never logged: errors
// name the key file, not its content), the wf-* interfaces, the routes via
// them, and the table. It must not make policy decisions (the plan says who
// peers with whom and what is allowed; policy computes it), talk to Raft or
// gossip, or persist plans (fail static is the agent's: it keeps the last
// plan and applies it at start). It returns errors and leaves logging them
// to the caller; its own log lines are about what changed on the host.
//
// The OS sits behind three small interfaces, each with a fake beside it for
// the tests of this package and of the agent: WireGuard (NewWireGuard),
// Links (NewLinks, rtnetlink) and Firewall (NewFirewall, nftables).
// NewWireGuard uses the kernel's WireGuard (a netlink link of type
// "wireguard", configured with wgctrl) when the kernel can create one, and
// otherwise runs wireguard-go inside the agent: a TUN, the device, and its
// UAPI socket in /run/wireguard so that wg(8) and wgctrl work on it. Embedded
// devices live as long as the process; kernel ones outlive it.
//
// Apply is a reconcile against what was last applied, kept in memory:
//   - an unchanged segment is not touched at all: no call reaches the host,
//     so no interface flaps and no handshake is lost;
//   - a changed peer set is patched in place, peer by peer (Remove for a
//     peer that left, UpdateOnly for one that changed, a plain add for a new
//     one; never ReplacePeers), and only the changed listen port, address or
//     routes are set;
//   - a segment that left the plan loses its interface, then its key;
//   - the firewall is replaced, in one atomic batch, only when its rules or
//     its interface list changed; counters carry over by name.
//
// A segment the Overlay does not know yet (the first Apply after a start, or
// one whose last attempt failed) is read back from its device and only the
// difference is applied, so a restarted agent adopts its kernel interfaces
// without a flap; wf-* interfaces that no plan segment claims are deleted.
// Errors are per segment (`overlay: segment "db": ...`), joined, and the
// failed segment is retried on the next Apply.
//
// Apply never fails open: removed interfaces go before the firewall forgets
// them (one that cannot be deleted stays in the table's interface set, where
// the default deny drops its traffic), and a new interface is only created
// once the firewall covering it is in place (else ErrFirewallNotApplied).
package overlay
