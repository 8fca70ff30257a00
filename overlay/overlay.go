package overlay

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-mesh/weft/policy"
)

// DefaultMTU is the MTU of overlay interfaces unless Options.MTU says
// otherwise: WireGuard's own default, which fits a 1500-byte underlay for
// IPv4 and IPv6 outer headers alike.
const DefaultMTU = 1420

// IfacePrefix starts the name of every interface weft manages.
const IfacePrefix = "wf-"

// ErrFirewallNotApplied is returned (wrapped) for a segment whose
// interface was not created because the firewall failed to apply: a new
// overlay interface never comes up without its rules.
var ErrFirewallNotApplied = errors.New("not created: the firewall is not applied")

// Options configures New.
type Options struct {
	WireGuard WireGuard    // required
	Links     Links        // required
	Firewall  Firewall     // required
	Keys      KeyStore     // required: Keys.Dir must be set
	Logger    *slog.Logger // required
	MTU       int          // optional: DefaultMTU when 0
}

// Overlay applies Plans to the host. Its methods are safe for concurrent
// use; they run one at a time.
type Overlay struct {
	wg    WireGuard
	links Links
	fw    Firewall
	keys  KeyStore
	log   *slog.Logger
	mtu   int

	mu sync.Mutex
	// applied holds each segment as last applied in full. A segment not
	// in it (first Apply, or its last attempt failed) is read back from
	// its device and corrected rather than assumed.
	applied map[string]policy.SegmentPlan
	// doomed holds interfaces to delete (by name), with the segment whose
	// key goes with them ("" to keep the key): they stay here, and in the
	// firewall's interface list, until the delete succeeded.
	doomed map[string]string
	// firewall is what was last applied, nil when it is to be applied.
	firewall *firewallState
	// leftovers says whether the interfaces of a previous run were looked
	// for.
	leftovers bool
	plan      []policy.SegmentPlan // the segments of the last Apply, for Status
}

type firewallState struct {
	rules  []policy.FirewallRule
	ifaces []string
}

// New returns an Overlay. It changes nothing on the host until Apply.
func New(o Options) (*Overlay, error) {
	switch {
	case o.WireGuard == nil:
		return nil, errors.New("overlay: Options.WireGuard is required")
	case o.Links == nil:
		return nil, errors.New("overlay: Options.Links is required")
	case o.Firewall == nil:
		return nil, errors.New("overlay: Options.Firewall is required")
	case o.Keys.Dir == "":
		return nil, errors.New("overlay: Options.Keys.Dir is required")
	case o.Logger == nil:
		return nil, errors.New("overlay: Options.Logger is required")
	case o.MTU < 0 || o.MTU > 65535:
		return nil, fmt.Errorf("overlay: Options.MTU %d out of range", o.MTU)
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	return &Overlay{
		wg: o.WireGuard, links: o.Links, fw: o.Firewall, keys: o.Keys, log: o.Logger, mtu: mtu,
		applied: map[string]policy.SegmentPlan{},
		doomed:  map[string]string{},
	}, nil
}

// Apply reconciles the host with p. What is unchanged since the last
// Apply is not touched; what changed is patched in place; what failed is
// retried by the next Apply. Every segment is attempted: the errors of
// all failed ones are joined.
//
// Order matters for never failing open: interfaces leaving the plan go
// first, while the old firewall still covers them; then the firewall;
// then the segments, and a new interface is only created once the
// firewall that covers it is in place.
func (o *Overlay) Apply(p *policy.Plan) error {
	if p == nil {
		return errors.New("overlay: nil plan")
	}
	o.mu.Lock()
	defer o.mu.Unlock()

	var errs []error
	var segs []policy.SegmentPlan
	want := map[string]bool{}       // segment names
	wantIfaces := map[string]bool{} // interface names
	for _, sp := range p.Segments {
		if want[sp.Name] {
			errs = append(errs, fmt.Errorf("overlay: segment %q: listed twice in the plan", sp.Name))
			continue
		}
		want[sp.Name] = true
		wantIfaces[sp.Interface] = true
		segs = append(segs, sp)
	}

	// 1. Interfaces that leave the plan.
	for _, name := range slices.Sorted(maps.Keys(o.applied)) {
		prev := o.applied[name]
		i := slices.IndexFunc(segs, func(s policy.SegmentPlan) bool { return s.Name == name })
		if i >= 0 && segs[i].Interface == prev.Interface {
			continue
		}
		delete(o.applied, name)
		seg := name
		if i >= 0 {
			seg = "" // renamed interface: the segment, and its key, stay
		}
		o.doomed[prev.Interface] = seg
	}
	if !o.leftovers {
		names, err := o.wg.List()
		if err != nil {
			errs = append(errs, fmt.Errorf("overlay: list interfaces: %w", err))
		} else {
			o.leftovers = true
			for _, n := range names {
				if _, ok := o.doomed[n]; !ok && strings.HasPrefix(n, IfacePrefix) && !wantIfaces[n] {
					o.doomed[n] = ""
				}
			}
		}
	}
	for _, iface := range slices.Sorted(maps.Keys(o.doomed)) {
		if err := o.remove(iface, o.doomed[iface], want, wantIfaces); err != nil {
			errs = append(errs, err)
		}
	}

	// 2. The firewall, over the interfaces of the plan and those not yet
	// deleted (which match no rule, so hit the default deny).
	ifaces := slices.Sorted(maps.Keys(wantIfaces))
	for n := range o.doomed {
		ifaces = append(ifaces, n)
	}
	slices.Sort(ifaces)
	ifaces = slices.Compact(ifaces)
	fwOK := true
	if o.firewall == nil || !rulesEqual(o.firewall.rules, p.Firewall) || !slices.Equal(o.firewall.ifaces, ifaces) {
		if err := o.fw.Apply(p.Firewall, ifaces); err != nil {
			o.firewall = nil
			fwOK = false
			errs = append(errs, fmt.Errorf("overlay: firewall: %w", err))
		} else {
			o.firewall = &firewallState{rules: cloneRules(p.Firewall), ifaces: ifaces}
			o.log.Info("firewall applied", "rules", len(p.Firewall), "ifaces", len(ifaces), "policy_version", p.PolicyVersion)
		}
	}

	// 3. The segments.
	for _, sp := range segs {
		if err := o.reconcile(sp, fwOK); err != nil {
			errs = append(errs, fmt.Errorf("overlay: segment %q: %w", sp.Name, err))
		}
	}
	o.plan = cloneSegments(segs)
	return errors.Join(errs...)
}

// remove deletes a doomed interface, and the key of its segment when the
// segment left the plan.
func (o *Overlay) remove(iface, seg string, want, wantIfaces map[string]bool) error {
	what := fmt.Sprintf("interface %s", iface)
	if seg != "" {
		what = fmt.Sprintf("segment %q", seg)
	}
	if wantIfaces[iface] {
		// Back in the plan before it was deleted: reconcile adopts it.
		delete(o.doomed, iface)
		return nil
	}
	if err := o.wg.Delete(iface); err != nil {
		return fmt.Errorf("overlay: %s: %w", what, err)
	}
	if seg != "" && !want[seg] {
		if err := o.keys.Remove(seg); err != nil {
			return fmt.Errorf("overlay: %s: %w", what, err)
		}
	}
	delete(o.doomed, iface)
	o.log.Info("interface removed", "segment", seg, "iface", iface)
	return nil
}

// reconcile brings one segment to sp.
func (o *Overlay) reconcile(sp policy.SegmentPlan, mayCreate bool) error {
	prev, known := o.applied[sp.Name]
	if known && segmentEqual(prev, sp) {
		return nil
	}
	// Forgotten until applied in full, so that a failure is retried from
	// what the device really has.
	delete(o.applied, sp.Name)
	if err := checkSegment(sp); err != nil {
		return err
	}
	want, err := peersOf(sp)
	if err != nil {
		return err
	}
	if known {
		err = o.update(prev, sp, want)
	} else {
		err = o.adopt(sp, want, mayCreate)
	}
	if err != nil {
		return err
	}
	o.applied[sp.Name] = cloneSegment(sp)
	return nil
}

// update patches a segment from its last applied plan: only what changed
// is sent, and peers are added, updated or removed one by one, so the
// tunnels to unchanged peers keep their sessions.
func (o *Overlay) update(prev, sp policy.SegmentPlan, want map[wgtypes.Key]peerState) error {
	have, _ := peersOf(prev) // prev was checked when it was applied
	var cfg wgtypes.Config
	if prev.ListenPort != sp.ListenPort {
		cfg.ListenPort = &sp.ListenPort
	}
	cfg.Peers = diffPeers(have, want, sp.Peers)
	if cfg.ListenPort != nil || len(cfg.Peers) > 0 {
		if err := o.wg.Configure(sp.Interface, cfg); err != nil {
			return err
		}
	}
	if prev.Address != sp.Address {
		if err := o.links.SetAddress(sp.Interface, sp.Address); err != nil {
			return err
		}
	}
	if r := routesOf(sp); !slices.Equal(routesOf(prev), r) {
		if err := o.links.SetRoutes(sp.Interface, r); err != nil {
			return err
		}
	}
	o.log.Info("segment updated", "segment", sp.Name, "iface", sp.Interface, "peer_changes", len(cfg.Peers))
	return nil
}

// adopt brings a segment whose state is not known to sp: it creates the
// interface when there is none, else reads the device and corrects only
// what differs (a restarted agent finds its kernel interfaces as it left
// them and does not disturb them). The Links calls are idempotent.
func (o *Overlay) adopt(sp policy.SegmentPlan, want map[wgtypes.Key]peerState, mayCreate bool) error {
	if _, err := o.keys.Ensure(sp.Name); err != nil {
		return err
	}
	priv, err := o.keys.Private(sp.Name)
	if err != nil {
		return err
	}
	dev, err := o.wg.Device(sp.Interface)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !mayCreate {
			return ErrFirewallNotApplied
		}
		if err := o.wg.Create(sp.Interface, o.mtu); err != nil {
			return err
		}
		cfg := wgtypes.Config{
			PrivateKey:   &priv,
			ListenPort:   &sp.ListenPort,
			ReplacePeers: true,
			Peers:        diffPeers(nil, want, sp.Peers),
		}
		if err := o.wg.Configure(sp.Interface, cfg); err != nil {
			return err
		}
		o.log.Info("segment created", "segment", sp.Name, "iface", sp.Interface, "role", sp.Role, "peers", len(want))
	case err != nil:
		return err
	default:
		var cfg wgtypes.Config
		if dev.PrivateKey != priv {
			cfg.PrivateKey = &priv
		}
		if dev.ListenPort != sp.ListenPort {
			cfg.ListenPort = &sp.ListenPort
		}
		cfg.Peers = diffPeers(devicePeers(dev), want, sp.Peers)
		if cfg.PrivateKey != nil || cfg.ListenPort != nil || len(cfg.Peers) > 0 {
			if err := o.wg.Configure(sp.Interface, cfg); err != nil {
				return err
			}
		}
		o.log.Info("segment adopted", "segment", sp.Name, "iface", sp.Interface,
			"key_changed", cfg.PrivateKey != nil, "peer_changes", len(cfg.Peers))
	}
	if err := o.links.SetAddress(sp.Interface, sp.Address); err != nil {
		return err
	}
	// Up before routes: the kernel refuses a route through a down link.
	if err := o.links.SetUp(sp.Interface); err != nil {
		return err
	}
	return o.links.SetRoutes(sp.Interface, routesOf(sp))
}

// peerState is what weft sets of one peer.
type peerState struct {
	endpoint netip.AddrPort // invalid: none
	allowed  []netip.Prefix // masked, sorted
}

func (p peerState) equal(q peerState) bool {
	return p.endpoint == q.endpoint && slices.Equal(p.allowed, q.allowed)
}

func checkSegment(sp policy.SegmentPlan) error {
	if !strings.HasPrefix(sp.Interface, IfacePrefix) || len(sp.Interface) > 15 || strings.ContainsAny(sp.Interface, "/ \x00") {
		return fmt.Errorf("interface %q: not a weft interface name (%s*, at most 15 bytes)", sp.Interface, IfacePrefix)
	}
	if !sp.Address.IsValid() {
		return errors.New("no address")
	}
	if sp.ListenPort < 0 || sp.ListenPort > 65535 {
		return fmt.Errorf("listen port %d out of range", sp.ListenPort)
	}
	if sp.Role != policy.Member && sp.Role != policy.Guest {
		return fmt.Errorf("unknown role %q", sp.Role)
	}
	return nil
}

// peersOf is the peers of a segment plan by key.
func peersOf(sp policy.SegmentPlan) (map[wgtypes.Key]peerState, error) {
	out := make(map[wgtypes.Key]peerState, len(sp.Peers))
	for _, p := range sp.Peers {
		k, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("peer %q: bad public key", p.Name)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("peer %q: public key used by another peer", p.Name)
		}
		var st peerState
		if p.Endpoint.IsValid() {
			st.endpoint = netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())
		}
		for _, a := range p.AllowedIPs {
			if !a.IsValid() {
				return nil, fmt.Errorf("peer %q: invalid allowed IP", p.Name)
			}
			st.allowed = append(st.allowed, a.Masked())
		}
		slices.SortFunc(st.allowed, comparePrefix)
		st.allowed = slices.Compact(st.allowed)
		out[k] = st
	}
	return out, nil
}

// devicePeers is the peers a device has, as peerStates.
func devicePeers(d *wgtypes.Device) map[wgtypes.Key]peerState {
	out := make(map[wgtypes.Key]peerState, len(d.Peers))
	for _, p := range d.Peers {
		var st peerState
		if p.Endpoint != nil {
			if ap := p.Endpoint.AddrPort(); ap.IsValid() {
				st.endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
		}
		for _, n := range p.AllowedIPs {
			if pr, ok := prefixOfIPNet(n); ok {
				st.allowed = append(st.allowed, pr.Masked())
			}
		}
		slices.SortFunc(st.allowed, comparePrefix)
		out[p.PublicKey] = st
	}
	return out
}

// diffPeers is the peer configs that turn have into want: removals
// first (sorted by key), then additions and updates in the plan's order.
// An addition has neither UpdateOnly nor Remove; an update is UpdateOnly
// and carries only what changed (an unchanged endpoint is not reset, so a
// roamed peer stays where it roamed).
func diffPeers(have, want map[wgtypes.Key]peerState, order []policy.Peer) []wgtypes.PeerConfig {
	var out []wgtypes.PeerConfig
	var gone []wgtypes.Key
	for k := range have {
		if _, ok := want[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b wgtypes.Key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range gone {
		out = append(out, wgtypes.PeerConfig{PublicKey: k, Remove: true})
	}
	for _, p := range order {
		k, _ := wgtypes.ParseKey(p.PublicKey) // checked by peersOf
		w := want[k]
		h, had := have[k]
		if had && h.equal(w) {
			continue
		}
		pc := wgtypes.PeerConfig{PublicKey: k, UpdateOnly: had}
		if !had {
			// A keepalive interval makes WireGuard handshake at once
			// instead of on the first packet: a restarted agent's peers
			// notice the new session now, not after their 15 s retry, and
			// NATs along the path stay open.
			ka := PersistentKeepalive
			pc.PersistentKeepaliveInterval = &ka
		}
		if !had || h.endpoint != w.endpoint {
			pc.Endpoint = udpAddr(w.endpoint)
		}
		if !had || !slices.Equal(h.allowed, w.allowed) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = ipNets(w.allowed)
		}
		out = append(out, pc)
	}
	return out
}

// routesOf is the routes a segment needs besides the connected route of
// its address: none for a member (its address has the segment's prefix
// length), one host route per peer address for a guest (its address is a
// /32 or /128).
func routesOf(sp policy.SegmentPlan) []netip.Prefix {
	if sp.Role != policy.Guest {
		return nil
	}
	var out []netip.Prefix
	for _, p := range sp.Peers {
		for _, a := range p.AllowedIPs {
			out = append(out, a.Masked())
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// SegmentStatus is one overlay interface as the device reports it.
type SegmentStatus struct {
	Name       string
	Interface  string
	Role       policy.Role
	Address    netip.Prefix
	ListenPort int
	PublicKey  string // this host's public key in the segment
	Peers      []PeerStatus
}

// PeerStatus is one peer as the device reports it.
type PeerStatus struct {
	Name          string // from the plan; "" for a peer the plan does not name
	PublicKey     string
	Endpoint      string // "" until known
	AllowedIPs    []netip.Prefix
	LastHandshake time.Time // zero: never
	RxBytes       int64
	TxBytes       int64
}

// Status reports the segments of the last Apply from their devices. A
// segment whose device cannot be read is still listed, from the plan, and
// its error joined to the result.
func (o *Overlay) Status() ([]SegmentStatus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []SegmentStatus
	var errs []error
	for _, sp := range o.plan {
		st := SegmentStatus{Name: sp.Name, Interface: sp.Interface, Role: sp.Role, Address: sp.Address}
		dev, err := o.wg.Device(sp.Interface)
		if err != nil {
			errs = append(errs, fmt.Errorf("overlay: segment %q: %w", sp.Name, err))
			out = append(out, st)
			continue
		}
		st.ListenPort = dev.ListenPort
		st.PublicKey = dev.PublicKey.String()
		names := map[string]string{}
		for _, p := range sp.Peers {
			names[p.PublicKey] = p.Name
		}
		for _, p := range dev.Peers {
			ps := PeerStatus{
				Name:          names[p.PublicKey.String()],
				PublicKey:     p.PublicKey.String(),
				LastHandshake: p.LastHandshakeTime,
				RxBytes:       p.ReceiveBytes,
				TxBytes:       p.TransmitBytes,
			}
			if p.Endpoint != nil {
				ps.Endpoint = p.Endpoint.String()
			}
			for _, n := range p.AllowedIPs {
				if pr, ok := prefixOfIPNet(n); ok {
					ps.AllowedIPs = append(ps.AllowedIPs, pr)
				}
			}
			st.Peers = append(st.Peers, ps)
		}
		slices.SortFunc(st.Peers, func(a, b PeerStatus) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.PublicKey, b.PublicKey))
		})
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}

// Cleanup removes every interface weft manages — those of the plan and
// any wf-* interface left by a previous run — and the firewall table. Keys
// stay. The next Apply starts from scratch.
func (o *Overlay) Cleanup() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	names := map[string]bool{}
	for _, sp := range o.applied {
		names[sp.Interface] = true
	}
	for _, sp := range o.plan {
		names[sp.Interface] = true
	}
	for n := range o.doomed {
		names[n] = true
	}
	listed, err := o.wg.List()
	if err != nil {
		errs = append(errs, fmt.Errorf("overlay: list interfaces: %w", err))
	}
	for _, n := range listed {
		if strings.HasPrefix(n, IfacePrefix) {
			names[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if err := o.wg.Delete(n); err != nil {
			errs = append(errs, fmt.Errorf("overlay: interface %s: %w", n, err))
			continue
		}
		o.log.Info("interface removed", "iface", n)
	}
	if err := o.fw.Remove(); err != nil {
		errs = append(errs, fmt.Errorf("overlay: firewall: %w", err))
	}
	o.applied = map[string]policy.SegmentPlan{}
	o.doomed = map[string]string{}
	o.firewall = nil
	o.leftovers = false
	o.plan = nil
	return errors.Join(errs...)
}

func segmentEqual(a, b policy.SegmentPlan) bool {
	return a.Name == b.Name && a.Interface == b.Interface && a.Role == b.Role &&
		a.CIDR == b.CIDR && a.Address == b.Address && a.ListenPort == b.ListenPort &&
		slices.EqualFunc(a.Peers, b.Peers, func(p, q policy.Peer) bool {
			return p.Name == q.Name && p.PublicKey == q.PublicKey && p.Endpoint == q.Endpoint &&
				slices.Equal(p.AllowedIPs, q.AllowedIPs)
		})
}

func rulesEqual(a, b []policy.FirewallRule) bool {
	return slices.EqualFunc(a, b, func(r, s policy.FirewallRule) bool {
		return r.Counter == s.Counter && r.Action == s.Action && r.Interface == s.Interface &&
			r.Proto == s.Proto && slices.Equal(r.Sources, s.Sources) && slices.Equal(r.Ports, s.Ports)
	})
}

func cloneSegment(sp policy.SegmentPlan) policy.SegmentPlan {
	sp.Peers = slices.Clone(sp.Peers)
	for i := range sp.Peers {
		sp.Peers[i].AllowedIPs = slices.Clone(sp.Peers[i].AllowedIPs)
	}
	return sp
}

func cloneSegments(s []policy.SegmentPlan) []policy.SegmentPlan {
	out := make([]policy.SegmentPlan, len(s))
	for i := range s {
		out[i] = cloneSegment(s[i])
	}
	return out
}

func cloneRules(rs []policy.FirewallRule) []policy.FirewallRule {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Sources = slices.Clone(out[i].Sources)
		out[i].Ports = slices.Clone(out[i].Ports)
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr {
	if !ap.IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(ap)
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, ipNetOf(p))
	}
	return out
}

func ipNetOf(p netip.Prefix) net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func prefixOfIPNet(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), true
}

// PersistentKeepalive is the keepalive interval of every peer.
const PersistentKeepalive = 25 * time.Second

// Counters returns the firewall's packet and byte counters by policy
// counter name (the flow metrics).
func (o *Overlay) Counters() (map[string]Counter, error) { return o.fw.Counters() }

// DeniedSources returns the sources of recently dropped packets, by
// interface and address, most packets first.
func (o *Overlay) DeniedSources() ([]DeniedSource, error) { return o.fw.DeniedSources() }
