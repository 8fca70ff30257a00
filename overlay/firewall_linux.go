package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/policy"
)

// FirewallOptions configures NewFirewall.
type FirewallOptions struct {
	// NetNSFd is optional: an open network namespace (a file of
	// /run/netns) whose table to manage. 0 means this process's namespace.
	NetNSFd int
}

// NewFirewall returns the nftables Firewall.
func NewFirewall(o FirewallOptions) Firewall { return &nftFirewall{netns: o.NetNSFd} }

type nftFirewall struct {
	netns int

	mu    sync.Mutex
	names map[string]string // nft object name → policy counter name, of the table last applied
}

func (f *nftFirewall) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if f.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(f.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: connect: %w", err)
	}
	return c, nil
}

func weftTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Apply replaces the table in one batch: add (so that the delete cannot
// fail on a missing table), delete, then the whole new table, then one
// Flush. The kernel applies a batch all or nothing, so packets meet either
// the old table or the new one, never a half-built one.
//
// Counter values are carried over by name: they are read just before the
// batch and the new counters start from them (what is counted between the
// read and the batch is lost), so a re-apply does not reset the flow
// metrics. The denied-source sets are not: the new table records denied
// sources afresh.
func (f *nftFirewall) Apply(rules []policy.FirewallRule, ifaces []string) error {
	rs, err := buildRuleset(rules, ifaces)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	old, err := readCounters(c)
	if err != nil {
		old = nil // a fresh start of the counters beats no firewall
	}

	t := weftTable()
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	for _, name := range rs.counters {
		prev := old[name]
		c.AddObj(&nftables.CounterObj{Table: t, Name: name, Packets: prev.Packets, Bytes: prev.Bytes})
	}
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	forward := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	// Before the input rules: a goto must find its chain in the batch.
	if err := addDenyChain(c, t); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if len(rs.ifaces) > 0 {
		set, err := addIfaceSet(c, t, rs.ifaces)
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		if err := addInput(c, t, input, set, rs); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		// Hosts are not routers: nothing that arrives on an overlay is
		// forwarded anywhere.
		c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: apply: %w", err)
	}
	f.names = rs.names
	return nil
}

// addInput fills the input chain:
//
//	iifname != @ifaces accept                (not ours: untouched)
//	ct state established,related accept      (replies of allowed flows)
//	ct state invalid drop
//	<policy rules, in order>
//	counter name "default-deny" goto deny
func addInput(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, set *nftables.Set, rs *ruleset) error {
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, expr.VerdictAccept)})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ctState(expr.CtStateBitINVALID, expr.VerdictDrop)})
	for _, r := range rs.input {
		exprs, err := ruleExprs(c, t, r)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: DefaultDenyCounter},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: DenyChain},
	}})
	return nil
}

// addDenyChain adds the sets of denied sources and the chain every drop
// of the input chain goes to:
//
//	update @denied4 { iifname . ip saddr counter }
//	update @denied6 { iifname . ip6 saddr counter }
//	drop
//
// The drop is a rule of its own because a dynset that cannot add (its set
// is full) ends its rule: in the deny rule itself that would skip the
// verdict and let the packet on to the rules below. Here it only skips
// the record. Each element carries its own counter (the dynset's counter
// expression, instantiated per element by the kernel); google/nftables
// can create such elements through a dynset and read their counters back,
// though it cannot write one, so a new table starts with empty sets.
func addDenyChain(c *nftables.Conn, t *nftables.Table) error {
	ch := c.AddChain(&nftables.Chain{Name: DenyChain, Table: t})
	for _, fam := range []struct {
		name    string
		nfproto byte
		addr    nftables.SetDatatype
		off     uint32
	}{
		{DeniedSet4, unix.NFPROTO_IPV4, nftables.TypeIPAddr, 12},
		{DeniedSet6, unix.NFPROTO_IPV6, nftables.TypeIP6Addr, 8},
	} {
		key, err := nftables.ConcatSetType(nftables.TypeIFName, fam.addr)
		if err != nil {
			return err
		}
		set := &nftables.Set{
			Table: t, Name: fam.name, KeyType: key, Concatenation: true,
			Dynamic: true, HasTimeout: true, Timeout: DeniedTimeout, Size: DeniedSetSize,
		}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("set %s: %w", fam.name, err)
		}
		// The key is two registers wide: the interface name fills
		// register 1 (16 bytes), the address follows in register 2.
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.nfproto}},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: fam.off, Len: fam.addr.Bytes},
			&expr.Dynset{
				SrcRegKey: 1, SetName: set.Name, SetID: set.ID,
				Operation: uint32(unix.NFT_DYNSET_OP_UPDATE),
				Exprs:     []expr.Any{&expr.Counter{}},
			},
		}})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
	return nil
}

func ctState(bits uint32, v expr.VerdictKind) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: v},
	}
}

// ruleExprs is one policy rule:
//
//	iifname "wf-db" ip saddr { 10.90.1.3, 10.90.1.7 } tcp dport 5432 counter name "rule_web-to-postgres" accept
//
// A deny rule ends in "goto deny" instead of accept.
func ruleExprs(c *nftables.Conn, t *nftables.Table, r nftRule) ([]expr.Any, error) {
	nfproto, off, alen, keyType := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4), nftables.TypeIPAddr
	if r.IPv6 {
		nfproto, off, alen, keyType = unix.NFPROTO_IPV6, 8, 16, nftables.TypeIP6Addr
	}
	src := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: true, KeyType: keyType}
	var elems []nftables.SetElement
	for _, a := range r.Sources {
		elems = append(elems, nftables.SetElement{Key: a.From.AsSlice()})
		if end := a.To.Next(); end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	if err := c.AddSet(src, elems); err != nil {
		return nil, fmt.Errorf("source set: %w", err)
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.Iface)},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: alen},
		&expr.Lookup{SourceRegister: 1, SetName: src.Name, SetID: src.ID},
	}
	if r.Proto != 0 {
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
		)
	}
	if len(r.Ports) > 0 {
		exprs = append(exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		switch p := r.Ports; {
		case len(p) == 1 && p[0].Lo == p[0].Hi:
			exprs = append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p[0].Lo)})
		case len(p) == 1:
			exprs = append(exprs, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(p[0].Lo), ToData: be16(p[0].Hi)})
		default:
			set := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: true,
				KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian}
			var pe []nftables.SetElement
			for _, pr := range p {
				pe = append(pe, nftables.SetElement{Key: be16(pr.Lo)})
				if pr.Hi < 65535 {
					pe = append(pe, nftables.SetElement{Key: be16(pr.Hi + 1), IntervalEnd: true})
				}
			}
			if err := c.AddSet(set, pe); err != nil {
				return nil, fmt.Errorf("port set: %w", err)
			}
			exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
		}
	}
	v := &expr.Verdict{Kind: expr.VerdictGoto, Chain: DenyChain}
	if r.Accept {
		v = &expr.Verdict{Kind: expr.VerdictAccept}
	}
	return append(exprs,
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: r.Counter},
		v,
	), nil
}

// addIfaceSet adds the named set "ifaces" of weft's interfaces. It is
// named, not anonymous, because nft(8) prints the names of an anonymous
// ifname set wrongly (google/nftables marks anonymous sets big endian).
func addIfaceSet(c *nftables.Conn, t *nftables.Table, ifaces []string) (*nftables.Set, error) {
	set := &nftables.Set{Table: t, Name: "ifaces", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	var elems []nftables.SetElement
	for _, n := range ifaces {
		elems = append(elems, nftables.SetElement{Key: ifname(n)})
	}
	if err := c.AddSet(set, elems); err != nil {
		return nil, fmt.Errorf("interface set: %w", err)
	}
	return set, nil
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// readCounters reads the table's counters by object name; a missing table
// has none.
func readCounters(c *nftables.Conn) (map[string]Counter, error) {
	objs, err := c.GetObjects(weftTable())
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return map[string]Counter{}, nil
		}
		return nil, err
	}
	out := make(map[string]Counter, len(objs))
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			out[co.Name] = Counter{Packets: co.Packets, Bytes: co.Bytes}
		}
	}
	return out, nil
}

func (f *nftFirewall) Counters() (map[string]Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	byObj, err := readCounters(c)
	if err != nil {
		return nil, fmt.Errorf("nftables: counters: %w", err)
	}
	out := make(map[string]Counter, len(byObj))
	for obj, v := range byObj {
		name, ok := f.names[obj]
		if !ok {
			name = obj // a table this process did not apply
		}
		out[name] = v
	}
	return out, nil
}

func (f *nftFirewall) DeniedSources() ([]DeniedSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	var out []DeniedSource
	for _, name := range []string{DeniedSet4, DeniedSet6} {
		set, err := c.GetSetByName(weftTable(), name)
		if errors.Is(err, unix.ENOENT) {
			continue // no table, or one applied before weft recorded denied sources
		}
		if err != nil {
			return nil, fmt.Errorf("nftables: set %s: %w", name, err)
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nftables: set %s: %w", name, err)
		}
		for _, e := range elems {
			ds, ok := deniedOf(e.Key)
			if !ok {
				return nil, fmt.Errorf("nftables: set %s: unexpected key of %d bytes", name, len(e.Key))
			}
			if e.Counter != nil {
				ds.Packets = e.Counter.Packets
			}
			out = append(out, ds)
		}
	}
	sortDenied(out)
	return out, nil
}

// deniedOf decodes a key of a denied set: the interface name (IFNAMSIZ
// bytes, zero padded), then the address.
func deniedOf(key []byte) (DeniedSource, bool) {
	if len(key) != unix.IFNAMSIZ+4 && len(key) != unix.IFNAMSIZ+16 {
		return DeniedSource{}, false
	}
	name, _, _ := bytes.Cut(key[:unix.IFNAMSIZ], []byte{0})
	addr, ok := netip.AddrFromSlice(key[unix.IFNAMSIZ:])
	return DeniedSource{Interface: string(name), Addr: addr}, ok
}

func (f *nftFirewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	t := weftTable()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove: %w", err)
	}
	f.names = nil
	return nil
}
