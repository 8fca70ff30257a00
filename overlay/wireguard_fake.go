package overlay

import (
	"fmt"
	"net"
	"os"
	"slices"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// FakeWireGuard is an in-memory WireGuard for tests: it keeps devices as
// wgctrl would report them, applies Configure with the protocol's
// semantics (ReplacePeers, Remove, UpdateOnly, ReplaceAllowedIPs),
// records every Configure and counts every call.
type FakeWireGuard struct {
	mu      sync.Mutex
	devices map[string]*fakeDevice
	calls   WireGuardCalls
	configs []ConfigureCall
	errs    map[string]error // "<op> <name>" → error
}

type fakeDevice struct {
	mtu int
	dev wgtypes.Device
}

// WireGuardCalls counts the calls made to a FakeWireGuard.
type WireGuardCalls struct {
	Create, Configure, Device, Delete, List int
}

// ConfigureCall is one recorded Configure.
type ConfigureCall struct {
	Name   string
	Config wgtypes.Config
}

// NewFakeWireGuard returns an empty FakeWireGuard.
func NewFakeWireGuard() *FakeWireGuard {
	return &FakeWireGuard{devices: map[string]*fakeDevice{}, errs: map[string]error{}}
}

// SetError makes every call of op ("create", "configure", "device",
// "delete", "list") on name fail with err, until set again with nil. For
// "list" the name is "".
func (f *FakeWireGuard) SetError(op, name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, op+" "+name)
		return
	}
	f.errs[op+" "+name] = err
}

// Calls returns the call counts so far.
func (f *FakeWireGuard) Calls() WireGuardCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Configs returns the Configure calls so far, oldest first.
func (f *FakeWireGuard) Configs() []ConfigureCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.configs)
}

// Reset forgets the call counts and recorded configs, not the devices.
func (f *FakeWireGuard) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = WireGuardCalls{}
	f.configs = nil
}

// Names returns the devices that exist, sorted.
func (f *FakeWireGuard) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.namesLocked()
}

// MTU returns a device's MTU (0 if there is no such device).
func (f *FakeWireGuard) MTU(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.devices[name]; ok {
		return d.mtu
	}
	return 0
}

func (f *FakeWireGuard) namesLocked() []string {
	var names []string
	for n := range f.devices {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (f *FakeWireGuard) Kind() string { return "fake" }

func (f *FakeWireGuard) Create(name string, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Create++
	if err := f.errs["create "+name]; err != nil {
		return err
	}
	if _, ok := f.devices[name]; !ok {
		f.devices[name] = &fakeDevice{mtu: mtu, dev: wgtypes.Device{Name: name, Type: wgtypes.Userspace}}
	}
	return nil
}

func (f *FakeWireGuard) Configure(name string, cfg wgtypes.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Configure++
	f.configs = append(f.configs, ConfigureCall{Name: name, Config: cloneConfig(cfg)})
	if err := f.errs["configure "+name]; err != nil {
		return err
	}
	d, ok := f.devices[name]
	if !ok {
		return fmt.Errorf("configure %s: %w", name, os.ErrNotExist)
	}
	dev := &d.dev
	if cfg.PrivateKey != nil {
		dev.PrivateKey = *cfg.PrivateKey
		dev.PublicKey = cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		dev.ListenPort = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		dev.Peers = nil
	}
	for _, pc := range cfg.Peers {
		i := slices.IndexFunc(dev.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
		if pc.Remove {
			if i >= 0 {
				dev.Peers = slices.Delete(dev.Peers, i, i+1)
			}
			continue
		}
		if i < 0 {
			if pc.UpdateOnly {
				continue
			}
			dev.Peers = append(dev.Peers, wgtypes.Peer{PublicKey: pc.PublicKey, ProtocolVersion: 1})
			i = len(dev.Peers) - 1
		}
		p := &dev.Peers[i]
		if pc.Endpoint != nil {
			e := *pc.Endpoint
			p.Endpoint = &e
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, cloneIPNets(pc.AllowedIPs)...)
	}
	return nil
}

func (f *FakeWireGuard) Device(name string) (*wgtypes.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Device++
	if err := f.errs["device "+name]; err != nil {
		return nil, err
	}
	d, ok := f.devices[name]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", name, os.ErrNotExist)
	}
	dev := d.dev
	dev.Peers = slices.Clone(dev.Peers)
	for i := range dev.Peers {
		dev.Peers[i].AllowedIPs = cloneIPNets(dev.Peers[i].AllowedIPs)
	}
	return &dev, nil
}

func (f *FakeWireGuard) Delete(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Delete++
	if err := f.errs["delete "+name]; err != nil {
		return err
	}
	delete(f.devices, name)
	return nil
}

func (f *FakeWireGuard) List() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.List++
	if err := f.errs["list "]; err != nil {
		return nil, err
	}
	return f.namesLocked(), nil
}

func (f *FakeWireGuard) Close() error { return nil }

func cloneConfig(c wgtypes.Config) wgtypes.Config {
	if c.PrivateKey != nil {
		k := *c.PrivateKey
		c.PrivateKey = &k
	}
	if c.ListenPort != nil {
		p := *c.ListenPort
		c.ListenPort = &p
	}
	c.Peers = slices.Clone(c.Peers)
	for i := range c.Peers {
		if e := c.Peers[i].Endpoint; e != nil {
			ec := *e
			c.Peers[i].Endpoint = &ec
		}
		c.Peers[i].AllowedIPs = cloneIPNets(c.Peers[i].AllowedIPs)
	}
	return c
}

func cloneIPNets(ns []net.IPNet) []net.IPNet {
	if ns == nil {
		return nil
	}
	out := make([]net.IPNet, len(ns))
	for i, n := range ns {
		out[i] = net.IPNet{IP: slices.Clone(n.IP), Mask: slices.Clone(n.Mask)}
	}
	return out
}

var _ WireGuard = (*FakeWireGuard)(nil)
