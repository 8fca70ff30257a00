package overlay

import (
	"net/netip"
	"slices"
	"sync"
)

// FakeLinks is an in-memory Links for tests: it keeps each interface's
// address, state and routes, and counts calls.
type FakeLinks struct {
	mu     sync.Mutex
	addrs  map[string]netip.Prefix
	up     map[string]bool
	routes map[string][]netip.Prefix
	calls  LinksCalls
	errs   map[string]error // "<op> <iface>" → error
}

// LinksCalls counts the calls made to a FakeLinks.
type LinksCalls struct {
	SetAddress, SetUp, SetRoutes int
}

// NewFakeLinks returns an empty FakeLinks.
func NewFakeLinks() *FakeLinks {
	return &FakeLinks{
		addrs:  map[string]netip.Prefix{},
		up:     map[string]bool{},
		routes: map[string][]netip.Prefix{},
		errs:   map[string]error{},
	}
}

// SetError makes op ("address", "up", "routes") on iface fail with err,
// until set again with nil.
func (f *FakeLinks) SetError(op, iface string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, op+" "+iface)
		return
	}
	f.errs[op+" "+iface] = err
}

// Calls returns the call counts so far.
func (f *FakeLinks) Calls() LinksCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Reset forgets the call counts, not the state.
func (f *FakeLinks) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = LinksCalls{}
}

// Address returns an interface's address.
func (f *FakeLinks) Address(iface string) netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[iface]
}

// IsUp says whether an interface was set up.
func (f *FakeLinks) IsUp(iface string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up[iface]
}

// Routes returns the routes set via an interface.
func (f *FakeLinks) Routes(iface string) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.routes[iface])
}

func (f *FakeLinks) SetAddress(iface string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.SetAddress++
	if err := f.errs["address "+iface]; err != nil {
		return err
	}
	f.addrs[iface] = addr
	return nil
}

func (f *FakeLinks) SetUp(iface string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.SetUp++
	if err := f.errs["up "+iface]; err != nil {
		return err
	}
	f.up[iface] = true
	return nil
}

func (f *FakeLinks) SetRoutes(iface string, routes []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.SetRoutes++
	if err := f.errs["routes "+iface]; err != nil {
		return err
	}
	f.routes[iface] = slices.Clone(routes)
	return nil
}

var _ Links = (*FakeLinks)(nil)
