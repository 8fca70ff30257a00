package policy

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
)

// fleet indexes a Document against a list of hosts once, so that the
// questions "who does this selector match" and "what may h send to t" cost
// a few word operations instead of a scan of the fleet per rule.
//
// Hosts are numbered in name order. Per host it keeps three bitsets: the
// segments it is a member of, the rules whose From matches it and the
// rules whose To matches it. What h may send to t depends only on those
// bitsets (the rules matching both are from(h) & to(t)), so the port-set
// arithmetic of each distinct combination of rules is done once and
// memoized.
type fleet struct {
	doc    *Document
	hosts  []*Host        // unique names, sorted by name
	byName map[string]int // index into hosts
	dupes  []string       // names given to more than one host; those hosts are left out

	segIdx    map[string]int // index into doc.Segments
	segWords  int
	ruleWords int
	seg       []uint64 // per host: segWords words of segment membership
	from, to  []uint64 // per host: ruleWords words of rule matches
	members   [][]int  // per segment: its members, in name order
	intra     []uint64 // the segments whose intra is allow
	ports     []portSet
	toSegs    [][]int // per rule: the segments its To names, in order

	memo   map[string]*mix
	keyBuf []byte
	andBuf []uint64
}

// mix is what a combination of matching rules allows.
type mix struct {
	eff   portSet // what the allow rules cover minus what the deny rules cover
	intra portSet // everything minus what the deny rules cover
	first int     // the first allow rule (file order) that grants something after denies, or -1
}

func newFleet(d *Document, hosts []Host) *fleet {
	f := &fleet{
		doc:       d,
		byName:    make(map[string]int, len(hosts)),
		segIdx:    make(map[string]int, len(d.Segments)),
		segWords:  words(len(d.Segments)),
		ruleWords: words(len(d.Rules)),
		memo:      map[string]*mix{},
	}
	order := make([]*Host, len(hosts))
	for i := range hosts {
		order[i] = &hosts[i]
	}
	slices.SortStableFunc(order, func(a, b *Host) int { return strings.Compare(a.Name, b.Name) })
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && order[j].Name == order[i].Name {
			j++
		}
		if j-i > 1 {
			// Which of two hosts of one name is meant cannot be told:
			// leave both out rather than depend on the order given.
			f.dupes = append(f.dupes, order[i].Name)
		} else {
			f.byName[order[i].Name] = len(f.hosts)
			f.hosts = append(f.hosts, order[i])
		}
		i = j
	}

	n := len(f.hosts)
	byTag := map[string][]int{}
	byService := map[string][]int{}
	for i, h := range f.hosts {
		for _, t := range h.Tags {
			if l := byTag[t]; len(l) == 0 || l[len(l)-1] != i {
				byTag[t] = append(l, i)
			}
		}
		for _, s := range h.Services {
			if l := byService[s]; len(l) == 0 || l[len(l)-1] != i {
				byService[s] = append(l, i)
			}
		}
	}
	match := func(sel Selector) []int {
		switch sel.Kind {
		case KindTag:
			return byTag[sel.Value]
		case KindService:
			return byService[sel.Value]
		case KindNode:
			if i, ok := f.byName[sel.Value]; ok {
				return []int{i}
			}
		case KindSegment:
			if s, ok := f.segIdx[sel.Value]; ok {
				return f.members[s]
			}
		}
		return nil
	}

	f.seg = make([]uint64, n*f.segWords)
	f.intra = make([]uint64, f.segWords)
	f.members = make([][]int, len(d.Segments))
	for s, seg := range d.Segments {
		f.segIdx[seg.Name] = s
		if seg.Intra != Deny {
			setBit(f.intra, s)
		}
		var m []int
		for _, sel := range seg.Members {
			for _, h := range match(sel) {
				if w := f.segOf(h); !hasBit(w, s) {
					setBit(w, s)
					m = append(m, h)
				}
			}
		}
		slices.Sort(m)
		f.members[s] = m
	}

	f.from = make([]uint64, n*f.ruleWords)
	f.to = make([]uint64, n*f.ruleWords)
	f.ports = make([]portSet, len(d.Rules))
	f.toSegs = make([][]int, len(d.Rules))
	for r := range d.Rules {
		rule := &d.Rules[r]
		f.ports[r] = rulePorts(rule)
		for _, sel := range rule.From {
			for _, h := range match(sel) {
				setBit(f.fromOf(h), r)
			}
		}
		for _, sel := range rule.To {
			for _, h := range match(sel) {
				setBit(f.toOf(h), r)
			}
			if sel.Kind == KindSegment {
				if s, ok := f.segIdx[sel.Value]; ok {
					f.toSegs[r] = append(f.toSegs[r], s)
				}
			}
		}
	}
	f.andBuf = make([]uint64, f.ruleWords)
	f.keyBuf = make([]byte, 8*f.ruleWords)
	return f
}

func (f *fleet) segOf(h int) []uint64  { return f.seg[h*f.segWords : (h+1)*f.segWords] }
func (f *fleet) fromOf(h int) []uint64 { return f.from[h*f.ruleWords : (h+1)*f.ruleWords] }
func (f *fleet) toOf(h int) []uint64   { return f.to[h*f.ruleWords : (h+1)*f.ruleWords] }

func (f *fleet) isMember(h, s int) bool { return hasBit(f.segOf(h), s) }

// reach is what a source may send to a target.
type reach struct {
	ports portSet // what is allowed after denies
	// path is the segment the traffic goes through, or -1 when nothing is
	// allowed (or either host is a member of no segment).
	path  int
	guest bool // the hosts share no segment: the source is a guest of path
}

func (f *fleet) pair(h, t int) reach {
	if h == t {
		return reach{path: -1}
	}
	return f.reachBits(f.segOf(h), f.fromOf(h), f.segOf(t), f.toOf(t))
}

// reachBits computes reach from the bitsets of a source (its segments and
// the rules whose From matches it) and a target (its segments and the
// rules whose To matches it).
func (f *fleet) reachBits(hSeg, hFrom, tSeg, tTo []uint64) reach {
	if isZero(hSeg) || isZero(tSeg) {
		return reach{path: -1}
	}
	for i := range f.andBuf {
		f.andBuf[i] = hFrom[i] & tTo[i]
	}
	m := f.mixOf(f.andBuf)
	if shared := firstCommon(hSeg, tSeg, nil); shared >= 0 {
		ports := m.eff
		if firstCommon(hSeg, tSeg, f.intra) >= 0 {
			ports = m.intra
		}
		if ports.empty() {
			return reach{path: -1}
		}
		return reach{ports: ports, path: shared}
	}
	if m.first < 0 {
		return reach{path: -1}
	}
	return reach{ports: m.eff, path: f.guestPath(m.first, tSeg), guest: true}
}

// guestPath is the segment a guest reaches a target through when rule r
// is the first to grant it: the first segment the rule's To names that the
// target is a member of, else the target's first segment by name.
func (f *fleet) guestPath(r int, tSeg []uint64) int {
	for _, s := range f.toSegs[r] {
		if hasBit(tSeg, s) {
			return s
		}
	}
	return firstCommon(tSeg, tSeg, nil)
}

func (f *fleet) mixOf(rules []uint64) *mix {
	for i, w := range rules {
		binary.LittleEndian.PutUint64(f.keyBuf[8*i:], w)
	}
	if m, ok := f.memo[string(f.keyBuf)]; ok {
		return m
	}
	var allow, deny portSet
	forBits(rules, func(r int) {
		switch f.doc.Rules[r].Action {
		case Deny:
			deny = deny.union(f.ports[r])
		case Allow:
			allow = allow.union(f.ports[r])
		}
	})
	m := &mix{eff: allow.minus(deny), intra: fullSet().minus(deny), first: -1}
	forBits(rules, func(r int) {
		if m.first < 0 && f.doc.Rules[r].Action == Allow && !f.ports[r].minus(deny).empty() {
			m.first = r
		}
	})
	f.memo[string(f.keyBuf)] = m
	return m
}

// matches reports whether host h is selected by sel.
func (f *fleet) matches(h int, sel Selector) bool {
	host := f.hosts[h]
	switch sel.Kind {
	case KindTag:
		return slices.Contains(host.Tags, sel.Value)
	case KindService:
		return slices.Contains(host.Services, sel.Value)
	case KindNode:
		return host.Name == sel.Value
	case KindSegment:
		s, ok := f.segIdx[sel.Value]
		return ok && f.isMember(h, s)
	}
	return false
}

func words(n int) int { return max(1, (n+63)/64) }

func setBit(w []uint64, i int)      { w[i/64] |= 1 << (i % 64) }
func hasBit(w []uint64, i int) bool { return w[i/64]&(1<<(i%64)) != 0 }

func isZero(w []uint64) bool {
	for _, x := range w {
		if x != 0 {
			return false
		}
	}
	return true
}

// firstCommon returns the lowest bit set in a, b and (when not nil) c,
// or -1.
func firstCommon(a, b, c []uint64) int {
	for i := range a {
		x := a[i] & b[i]
		if c != nil {
			x &= c[i]
		}
		if x != 0 {
			return i*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

func forBits(w []uint64, fn func(int)) {
	for i, x := range w {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			fn(i*64 + b)
			x &^= 1 << b
		}
	}
}
