package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Nebula, from Debian's package, as the other userspace overlay: a CA and
// two host certificates made here, a is the lighthouse, both have the
// other in static_host_map, the firewall allows everything. Its MTU is set
// to WireGuard's 1420 (Nebula's own default is 1300) so that packet sizes
// match the wireguard-go paths; everything else keeps Nebula's defaults.
const (
	nebulaIface = "wfb-neb0"
	nebulaPort  = 4242
	nebulaMTU   = 1420
)

var (
	nebulaAddrA = netip.MustParseAddr("10.214.3.1")
	nebulaAddrB = netip.MustParseAddr("10.214.3.2")
)

func (b *bed) startNebula(ctx context.Context) (*path, error) {
	dir := filepath.Join(b.dir, "nebula")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	certCmds := [][]string{
		{"ca", "-name", "wfb-bench", "-duration", "24h", "-out-crt", f("ca.crt"), "-out-key", f("ca.key")},
		{"sign", "-ca-crt", f("ca.crt"), "-ca-key", f("ca.key"), "-name", "a", "-ip", netip.PrefixFrom(nebulaAddrA, 24).String(), "-out-crt", f("a.crt"), "-out-key", f("a.key")},
		{"sign", "-ca-crt", f("ca.crt"), "-ca-key", f("ca.key"), "-name", "b", "-ip", netip.PrefixFrom(nebulaAddrB, 24).String(), "-out-crt", f("b.crt"), "-out-key", f("b.key")},
	}
	for _, args := range certCmds {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		out, err := exec.CommandContext(cctx, "nebula-cert", args...).CombinedOutput()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("nebula-cert %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, s := range []struct {
		h               *host
		lighthouse      bool
		peer, peerUnder netip.Addr
	}{
		{b.a, true, nebulaAddrB, b.b.ip},
		{b.b, false, nebulaAddrA, b.a.ip},
	} {
		cfg := nebulaConfig(dir, s.h.name, s.lighthouse, s.peer, s.peerUnder)
		file := f(s.h.name + ".yml")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		if _, err := b.start("nebula-"+s.h.name, nil, s.h.inNS("nebula", "-config", file)...); err != nil {
			return nil, err
		}
	}
	err := b.waitFor(ctx, 30*time.Second, "a ping over Nebula", func() (bool, string) {
		if b.a.ping(ctx, nebulaAddrB, 500*time.Millisecond) {
			return true, ""
		}
		return false, "no reply from " + nebulaAddrB.String()
	})
	if err != nil {
		return nil, err
	}
	return &path{Name: pathNebula, Iface: nebulaIface, Dest: nebulaAddrB.String(),
		Note: "Debian's nebula, " + strings.TrimPrefix(version("nebula", "-version"), "Version: ") + ", defaults but MTU 1420"}, nil
}

// nebulaConfig is one host's config; peer is the other host's Nebula
// address and peerUnder its underlay address. The lighthouse (a) lists no
// lighthouse hosts; b lists a.
func nebulaConfig(dir, name string, lighthouse bool, peer, peerUnder netip.Addr) string {
	hosts := "[]"
	if !lighthouse {
		hosts = fmt.Sprintf("[%q]", peer.String())
	}
	return fmt.Sprintf(`pki:
  ca: %s
  cert: %s
  key: %s
static_host_map:
  %q: [%q]
lighthouse:
  am_lighthouse: %t
  interval: 60
  hosts: %s
listen:
  host: 0.0.0.0
  port: %d
punchy:
  punch: false
tun:
  disabled: false
  dev: %s
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: %d
logging:
  level: info
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
`, filepath.Join(dir, "ca.crt"), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"),
		peer.String(), fmt.Sprintf("%s:%d", peerUnder, nebulaPort),
		lighthouse, hosts, nebulaPort, nebulaIface, nebulaMTU)
}
