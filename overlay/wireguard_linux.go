package overlay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// uapiDir is where wireguard-go puts its UAPI sockets (ipc's default; wg(8)
// and wgctrl look there too). On Linux /var/run is /run.
const uapiDir = "/var/run/wireguard"

func newWireGuard(log *slog.Logger) (WireGuard, error) {
	if log == nil {
		return nil, errors.New("overlay: NewWireGuard: a logger is required")
	}
	ctl, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("overlay: wgctrl: %w", err)
	}
	ok, why := kernelHasWireGuard()
	if ok {
		log.Info("wireguard implementation chosen", "kind", KindKernel)
		return &kernelWireGuard{links: netlinkWGOps{}, ctl: ctl}, nil
	}
	log.Info("wireguard implementation chosen", "kind", KindEmbedded, "reason", why)
	return &embeddedWireGuard{log: log, ctl: ctl, devs: map[string]*embeddedDevice{}}, nil
}

// kernelHasWireGuard probes by creating (and at once deleting) a
// wireguard link under a throwaway name: the only test that also loads the
// module where it is available but not yet loaded.
func kernelHasWireGuard() (bool, string) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, err.Error()
	}
	name := "wfprobe" + hex.EncodeToString(b[:]) // 15 bytes
	if err := (netlinkWGOps{}).addWireGuard(name, 1420); err != nil {
		return false, "no kernel wireguard: " + err.Error()
	}
	_ = (netlinkWGOps{}).del(name)
	return true, ""
}

// netlinkWGOps is wgLinkOps over vishvananda/netlink.
type netlinkWGOps struct{}

func (netlinkWGOps) addWireGuard(name string, mtu int) error {
	return netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
}

func (netlinkWGOps) linkType(name string) (string, error) {
	l, err := linkByName(name)
	if err != nil {
		return "", err
	}
	return l.Type(), nil
}

func (netlinkWGOps) setMTU(name string, mtu int) error {
	l, err := linkByName(name)
	if err != nil {
		return err
	}
	if l.Attrs().MTU == mtu {
		return nil
	}
	return netlink.LinkSetMTU(l, mtu)
}

func (netlinkWGOps) del(name string) error {
	l, err := linkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkDel(l)
}

func (netlinkWGOps) namesOfType(typ string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if l.Type() == typ {
			names = append(names, l.Attrs().Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// linkByName is netlink.LinkByName whose not-found error wraps
// os.ErrNotExist.
func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("link %s: %w", name, os.ErrNotExist)
	}
	return l, err
}

// embeddedWireGuard runs wireguard-go inside the agent: a TUN, the device,
// and its UAPI socket (so wg(8) and wgctrl see it as any userspace
// WireGuard). The devices live as long as the agent: a restart recreates
// them (the TUN goes with the process), while the firewall table stays.
//
// UAPI sockets are named by interface in one directory, so two agents on a
// host (the namespace tests) need a mount namespace each with its own
// /run/wireguard; a second agent's Create fails with "unix socket in use"
// rather than configuring the first one's device.
type embeddedWireGuard struct {
	log *slog.Logger
	ctl wgClient

	mu   sync.Mutex
	devs map[string]*embeddedDevice
}

type embeddedDevice struct {
	dev  *device.Device
	uapi net.Listener
}

func (e *embeddedWireGuard) Kind() string { return KindEmbedded }

func (e *embeddedWireGuard) Create(name string, mtu int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.devs[name]; ok {
		return nil
	}
	// CreateTUN keeps wireguard-go's defaults, among them TUN GSO/GRO
	// where the kernel offers them.
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return fmt.Errorf("create %s: tun: %w", name, err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), deviceLogger(e.log, name))
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return fmt.Errorf("create %s: uapi socket: %w", name, err)
	}
	uapi, err := ipc.UAPIListen(name, f)
	f.Close() // UAPIListen holds its own descriptor
	if err != nil {
		dev.Close()
		os.Remove(socketPath(name))
		return fmt.Errorf("create %s: uapi listen: %w", name, err)
	}
	d := &embeddedDevice{dev: dev, uapi: uapi}
	e.devs[name] = d
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	// A device closes itself when its TUN goes away (ip link del); forget
	// it then, so Device reports it missing and the next Apply recreates
	// it.
	go func() {
		<-dev.Wait()
		uapi.Close()
		e.mu.Lock()
		if e.devs[name] == d {
			delete(e.devs, name)
		}
		e.mu.Unlock()
	}()
	return nil
}

func (e *embeddedWireGuard) own(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.devs[name]
	return ok
}

func (e *embeddedWireGuard) Configure(name string, cfg wgtypes.Config) error {
	// Only our own devices: a socket of that name could be another
	// process's.
	if !e.own(name) {
		return fmt.Errorf("configure %s: %w", name, os.ErrNotExist)
	}
	if err := e.ctl.ConfigureDevice(name, cfg); err != nil {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	return nil
}

func (e *embeddedWireGuard) Device(name string) (*wgtypes.Device, error) {
	if !e.own(name) {
		return nil, fmt.Errorf("device %s: %w", name, os.ErrNotExist)
	}
	d, err := e.ctl.Device(name)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	return d, nil
}

func (e *embeddedWireGuard) Delete(name string) error {
	e.mu.Lock()
	d, ok := e.devs[name]
	delete(e.devs, name)
	e.mu.Unlock()
	if !ok {
		removeStaleSocket(name)
		return nil
	}
	d.uapi.Close()
	d.dev.Close() // closes the TUN, which removes the link
	if err := os.Remove(socketPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// List names this process's devices and the stale sockets of a previous
// run (nobody answers on them); live sockets of other processes are not
// ours to list.
func (e *embeddedWireGuard) List() ([]string, error) {
	e.mu.Lock()
	names := make([]string, 0, len(e.devs))
	for n := range e.devs {
		names = append(names, n)
	}
	e.mu.Unlock()
	entries, err := os.ReadDir(uapiDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %w", uapiDir, err)
	}
	for _, ent := range entries {
		n, ok := strings.CutSuffix(ent.Name(), ".sock")
		if !ok || slices.Contains(names, n) || ent.Type()&os.ModeSocket == 0 {
			continue
		}
		if stale(socketPath(n)) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (e *embeddedWireGuard) Close() error {
	e.mu.Lock()
	names := make([]string, 0, len(e.devs))
	for n := range e.devs {
		names = append(names, n)
	}
	e.mu.Unlock()
	var errs []error
	for _, n := range names {
		errs = append(errs, e.Delete(n))
	}
	errs = append(errs, e.ctl.Close())
	return errors.Join(errs...)
}

func socketPath(name string) string { return filepath.Join(uapiDir, name+".sock") }

// stale says whether nobody listens on a unix socket.
func stale(path string) bool {
	c, err := net.Dial("unix", path)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func removeStaleSocket(name string) {
	if p := socketPath(name); stale(p) {
		os.Remove(p)
	}
}

// deviceLogger adapts wireguard-go's printf logger to slog, at debug:
// wireguard-go reports every retried handshake as an error, which is
// routine on a mesh where peers come and go.
func deviceLogger(log *slog.Logger, iface string) *device.Logger {
	l := log.With("iface", iface)
	logf := func(format string, args ...any) {
		if !l.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
		l.Debug("wireguard-go: " + fmt.Sprintf(format, args...))
	}
	return &device.Logger{Verbosef: logf, Errorf: logf}
}

var (
	_ WireGuard = (*kernelWireGuard)(nil)
	_ WireGuard = (*embeddedWireGuard)(nil)
)
