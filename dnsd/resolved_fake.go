package dnsd

import (
	"net/netip"
	"slices"
	"sync"
)

// FakeResolved is a [Resolved] that records what it is asked and keeps the
// resulting per-link configuration, for the agent's tests.
type FakeResolved struct {
	mu    sync.Mutex
	calls []ResolvedCall
	links map[string]LinkDNS
	err   error
}

// ResolvedCall is one call to a [FakeResolved]: Op is "set" or "revert".
type ResolvedCall struct {
	Op      string
	Link    string
	Servers []netip.AddrPort
	Domains []string
}

// LinkDNS is the DNS configuration of one link in a [FakeResolved].
type LinkDNS struct {
	Servers []netip.AddrPort
	Domains []string
}

// NewFakeResolved returns an empty fake.
func NewFakeResolved() *FakeResolved {
	return &FakeResolved{links: make(map[string]LinkDNS)}
}

// FailWith makes every later call record itself and return err (nil heals).
func (f *FakeResolved) FailWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// SetLinkDNS records the call and, unless failing, sets the link.
func (f *FakeResolved) SetLinkDNS(link string, servers []netip.AddrPort, domains []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := ResolvedCall{Op: "set", Link: link, Servers: slices.Clone(servers), Domains: slices.Clone(domains)}
	f.calls = append(f.calls, c)
	if f.err != nil {
		return f.err
	}
	f.links[link] = LinkDNS{Servers: c.Servers, Domains: c.Domains}
	return nil
}

// RevertLink records the call and, unless failing, forgets the link.
func (f *FakeResolved) RevertLink(link string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ResolvedCall{Op: "revert", Link: link})
	if f.err != nil {
		return f.err
	}
	delete(f.links, link)
	return nil
}

// Calls returns the calls so far, oldest first.
func (f *FakeResolved) Calls() []ResolvedCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Link returns the configuration of link, and whether it has one.
func (f *FakeResolved) Link(link string) (LinkDNS, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[link]
	return l, ok
}

var (
	_ Resolved = (*Resolvectl)(nil)
	_ Resolved = (*FakeResolved)(nil)
)
