package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgHelperCmd is the hidden subcommand this program re-execs itself with,
// in a host's namespace, to run a bare wireguard-go device: the baseline
// weft's embedded device is compared with.
const wgHelperCmd = "wg-helper"

// The bare device: same MTU as weft's overlay interfaces (overlay's
// DefaultMTU) so that only the software differs.
const (
	wgIface = "wfb-wg0"
	wgPort  = 51820
	wgMTU   = 1420
)

var (
	wgAddrA = netip.MustParseAddr("10.214.1.1")
	wgAddrB = netip.MustParseAddr("10.214.1.2")
)

// envWGKey carries the helper's private key (hex), so that it is not on a
// command line for ps to show.
const envWGKey = "WFB_WG_PRIVATE_KEY"

// startBareWireGuard runs one helper per host, each a wireguard-go device
// with the other as its only peer, and waits until a ping crosses.
func (b *bed) startBareWireGuard(ctx context.Context) (*path, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	keyA, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	keyB, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	type side struct {
		h         *host
		key       wgtypes.Key
		addr      netip.Addr
		peer      wgtypes.Key
		peerAddr  netip.Addr
		peerUnder netip.Addr
	}
	for _, s := range []side{
		{b.a, keyA, wgAddrA, keyB.PublicKey(), wgAddrB, b.b.ip},
		{b.b, keyB, wgAddrB, keyA.PublicKey(), wgAddrA, b.a.ip},
	} {
		argv := s.h.inNSPrivateMount(self, wgHelperCmd,
			"-iface", wgIface, "-mtu", strconv.Itoa(wgMTU), "-port", strconv.Itoa(wgPort),
			"-addr", netip.PrefixFrom(s.addr, 24).String(),
			"-peer", hex.EncodeToString(s.peer[:]),
			"-endpoint", netip.AddrPortFrom(s.peerUnder, wgPort).String(),
			"-allowed", netip.PrefixFrom(s.peerAddr, 32).String())
		if _, err := b.start("wg-helper-"+s.h.name, []string{envWGKey + "=" + hex.EncodeToString(s.key[:])}, argv...); err != nil {
			return nil, err
		}
	}
	err = b.waitFor(ctx, 20*time.Second, "a ping over the bare wireguard-go tunnel", func() (bool, string) {
		if b.a.ping(ctx, wgAddrB, 500*time.Millisecond) {
			return true, ""
		}
		return false, "no reply from " + wgAddrB.String()
	})
	if err != nil {
		return nil, err
	}
	return &path{Name: pathWG, Iface: wgIface, Dest: wgAddrB.String(),
		Note: "tun.CreateTUN + device.NewDevice(conn.NewDefaultBind()), wireguard-go's default offloads"}, nil
}

// wgHelperMain is the helper: it makes the device, configures it through
// UAPI text (IpcSet), gives the interface its address, brings it up (which
// brings the device up), serves UAPI on /run/wireguard like any
// wireguard-go, and runs until SIGTERM/SIGINT.
func wgHelperMain(args []string) int {
	fs := flag.NewFlagSet(wgHelperCmd, flag.ContinueOnError)
	iface := fs.String("iface", "", "interface name")
	mtu := fs.Int("mtu", wgMTU, "MTU")
	port := fs.Int("port", 0, "listen port")
	addr := fs.String("addr", "", "interface address, CIDR")
	peer := fs.String("peer", "", "peer public key, hex")
	endpoint := fs.String("endpoint", "", "peer endpoint ip:port")
	allowed := fs.String("allowed", "", "peer allowed IP, CIDR")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "wg-helper: "+format+"\n", a...)
		return 1
	}
	key := os.Getenv(envWGKey)
	if *iface == "" || *port == 0 || *addr == "" || *peer == "" || *endpoint == "" || *allowed == "" || key == "" {
		return fail("missing flags or %s", envWGKey)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	tdev, err := tun.CreateTUN(*iface, *mtu)
	if err != nil {
		return fail("tun: %v", err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wg-helper: "))
	defer dev.Close()
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
		key, *port, *peer, *endpoint, *allowed)
	if err := dev.IpcSet(cfg); err != nil {
		return fail("IpcSet: %v", err)
	}
	f, err := ipc.UAPIOpen(*iface)
	if err != nil {
		return fail("uapi: %v", err)
	}
	uapi, err := ipc.UAPIListen(*iface, f)
	f.Close()
	if err != nil {
		return fail("uapi listen: %v", err)
	}
	defer uapi.Close()
	go serveUAPI(dev, uapi)

	for _, a := range [][]string{
		{"addr", "add", *addr, "dev", *iface},
		{"link", "set", *iface, "up"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		out, err := exec.CommandContext(ctx, "ip", a...).CombinedOutput()
		cancel()
		if err != nil {
			return fail("ip %v: %v: %s", a, err, out)
		}
	}
	fmt.Fprintf(os.Stderr, "wg-helper: %s up at %s, peer %s\n", *iface, *addr, *endpoint)
	select {
	case <-sigs:
	case <-dev.Wait():
		return fail("device closed")
	}
	return 0
}

func serveUAPI(dev *device.Device, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go dev.IpcHandle(c)
	}
}
