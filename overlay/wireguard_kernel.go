package overlay

import (
	"errors"
	"fmt"
	"os"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgClient is the part of wgctrl.Client the implementations use; a test
// replaces it.
type wgClient interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
	Close() error
}

// wgLinkOps is the part of rtnetlink the kernel implementation uses; a
// test replaces it, since no kernel here has the WireGuard module.
type wgLinkOps interface {
	// addWireGuard adds a link of type "wireguard".
	addWireGuard(name string, mtu int) error
	// linkType returns a link's type ("wireguard", "tun", ...), or an
	// error wrapping os.ErrNotExist.
	linkType(name string) (string, error)
	// setMTU sets a link's MTU.
	setMTU(name string, mtu int) error
	// del deletes a link; an absent link is an error wrapping
	// os.ErrNotExist.
	del(name string) error
	// namesOfType lists the links of one type.
	namesOfType(typ string) ([]string, error)
}

// kernelWireGuard drives the in-kernel WireGuard: links through rtnetlink,
// configuration through wgctrl (generic netlink). Interfaces outlive the
// agent, which is what lets a restarted agent adopt them without a flap.
type kernelWireGuard struct {
	links wgLinkOps
	ctl   wgClient
}

func (k *kernelWireGuard) Kind() string { return KindKernel }

func (k *kernelWireGuard) Create(name string, mtu int) error {
	typ, err := k.links.linkType(name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := k.links.addWireGuard(name, mtu); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("create %s: %w", name, err)
	case typ != "wireguard":
		return fmt.Errorf("create %s: a %s link of that name exists", name, typ)
	}
	// Already there (a previous run's): keep it, only the MTU is ours to
	// correct, and setting an unchanged MTU does not disturb the link.
	if err := k.links.setMTU(name, mtu); err != nil {
		return fmt.Errorf("create %s: mtu: %w", name, err)
	}
	return nil
}

func (k *kernelWireGuard) Configure(name string, cfg wgtypes.Config) error {
	if err := k.ctl.ConfigureDevice(name, cfg); err != nil {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	return nil
}

func (k *kernelWireGuard) Device(name string) (*wgtypes.Device, error) {
	d, err := k.ctl.Device(name)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	return d, nil
}

func (k *kernelWireGuard) Delete(name string) error {
	err := k.links.del(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (k *kernelWireGuard) List() ([]string, error) {
	names, err := k.links.namesOfType("wireguard")
	if err != nil {
		return nil, fmt.Errorf("list wireguard links: %w", err)
	}
	return names, nil
}

func (k *kernelWireGuard) Close() error { return k.ctl.Close() }
