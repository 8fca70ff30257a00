package overlay

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeLinkOps stands in for rtnetlink: no kernel here has the WireGuard
// module, so the kernel implementation is tested against this.
type fakeLinkOps struct {
	links map[string]string // name → type
	mtus  map[string]int
	log   []string
}

func (f *fakeLinkOps) addWireGuard(name string, mtu int) error {
	f.log = append(f.log, fmt.Sprintf("add wireguard %s mtu %d", name, mtu))
	f.links[name], f.mtus[name] = "wireguard", mtu
	return nil
}

func (f *fakeLinkOps) linkType(name string) (string, error) {
	typ, ok := f.links[name]
	if !ok {
		return "", fmt.Errorf("link %s: %w", name, os.ErrNotExist)
	}
	return typ, nil
}

func (f *fakeLinkOps) setMTU(name string, mtu int) error {
	if f.mtus[name] != mtu {
		f.log = append(f.log, fmt.Sprintf("mtu %s %d", name, mtu))
		f.mtus[name] = mtu
	}
	return nil
}

func (f *fakeLinkOps) del(name string) error {
	if _, ok := f.links[name]; !ok {
		return fmt.Errorf("link %s: %w", name, os.ErrNotExist)
	}
	f.log = append(f.log, "del "+name)
	delete(f.links, name)
	return nil
}

func (f *fakeLinkOps) namesOfType(typ string) ([]string, error) {
	var out []string
	for n, t := range f.links {
		if t == typ {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fakeWGClient stands in for wgctrl's generic netlink client.
type fakeWGClient struct {
	ops  *fakeLinkOps
	cfgs []string
}

func (c *fakeWGClient) Device(name string) (*wgtypes.Device, error) {
	if c.ops.links[name] != "wireguard" {
		return nil, os.ErrNotExist
	}
	return &wgtypes.Device{Name: name, Type: wgtypes.LinuxKernel}, nil
}

func (c *fakeWGClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	if c.ops.links[name] != "wireguard" {
		return os.ErrNotExist
	}
	c.cfgs = append(c.cfgs, fmt.Sprintf("%s peers=%d", name, len(cfg.Peers)))
	return nil
}

func (c *fakeWGClient) Close() error { return nil }

func TestKernelWireGuard(t *testing.T) {
	ops := &fakeLinkOps{links: map[string]string{"eth0": "veth", "wf-old": "wireguard"}, mtus: map[string]int{"wf-old": 1420}}
	ctl := &fakeWGClient{ops: ops}
	var k WireGuard = &kernelWireGuard{links: ops, ctl: ctl}
	if k.Kind() != KindKernel {
		t.Errorf("Kind = %q", k.Kind())
	}

	if _, err := k.Device("wf-db"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Device of a missing link: %v, want ErrNotExist", err)
	}
	if err := k.Create("wf-db", 1380); err != nil {
		t.Fatal(err)
	}
	if err := k.Create("wf-db", 1380); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := k.Create("wf-old", 1380); err != nil { // adopted, MTU corrected
		t.Fatal(err)
	}
	if err := k.Create("eth0", 1420); err == nil || !strings.Contains(err.Error(), "a veth link of that name exists") {
		t.Errorf("Create over a veth: %v", err)
	}
	if err := k.Configure("wf-db", wgtypes.Config{Peers: make([]wgtypes.PeerConfig, 2)}); err != nil {
		t.Fatal(err)
	}
	if d, err := k.Device("wf-db"); err != nil || d.Type != wgtypes.LinuxKernel {
		t.Errorf("Device = %v, %v", d, err)
	}
	names, err := k.List()
	if err != nil || !slices.Equal(names, []string{"wf-db", "wf-old"}) {
		t.Errorf("List = %v, %v", names, err)
	}
	if err := k.Delete("wf-db"); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete("wf-db"); err != nil {
		t.Errorf("deleting a missing link: %v", err)
	}
	if err := k.Configure("wf-db", wgtypes.Config{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Configure after Delete: %v", err)
	}
	want := []string{"add wireguard wf-db mtu 1380", "mtu wf-old 1380", "del wf-db"}
	if diff := cmp.Diff(want, ops.log); diff != "" {
		t.Errorf("link operations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"wf-db peers=2"}, ctl.cfgs); diff != "" {
		t.Errorf("configs (-want +got):\n%s", diff)
	}
}

// TestOverlayOnKernelWireGuard runs a reconcile through the kernel
// implementation, faked below it.
func TestOverlayOnKernelWireGuard(t *testing.T) {
	ops := &fakeLinkOps{links: map[string]string{}, mtus: map[string]int{}}
	k := &kernelWireGuard{links: ops, ctl: &fakeWGClient{ops: ops}}
	r := newRig(t)
	ov, err := New(Options{WireGuard: k, Links: r.links, Firewall: r.fw, Keys: r.keys, Logger: r.ov.log, MTU: 1380})
	if err != nil {
		t.Fatal(err)
	}
	kr := newKeyring(t, "b", "c", "d", "e")
	if err := ov.Apply(basePlan(kr)); err != nil {
		t.Fatal(err)
	}
	want := []string{"add wireguard wf-db mtu 1380", "add wireguard wf-web mtu 1380"}
	if diff := cmp.Diff(want, ops.log); diff != "" {
		t.Errorf("link operations (-want +got):\n%s", diff)
	}
	if err := ov.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if len(ops.links) != 0 {
		t.Errorf("links after Cleanup: %v", ops.links)
	}
}
