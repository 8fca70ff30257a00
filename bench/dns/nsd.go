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

// nsdConf serves the zone on 127.0.0.1:nsdPort with everything that would
// touch the host's NSD (database, zone list, xfrd state, pid file, chroot,
// remote control) off or in dir.
//
//   - rrl-ratelimit: 0 and rrl-whitelist-ratelimit: 0: Debian's NSD
//     rate-limits each client /24 (200 qps by default), which would measure
//     the limiter, not the server.
//   - minimal-responses: yes: without it NSD puts the zone's NS in the
//     AUTHORITY of every answer, which weft never does; with it, its answers
//     are weft's but for the SRV answers' ADDITIONAL A record, which NSD
//     then leaves out (the report says so).
//   - server-count: NSD's default is 1 process; weft's server is one Go
//     process using every core. -nsd-servers changes it.
func nsdConf(dir string, servers int) string {
	var b strings.Builder
	b.WriteString("server:\n")
	fmt.Fprintf(&b, "  ip-address: 127.0.0.1@%d\n", nsdPort)
	b.WriteString("  do-ip6: no\n")
	fmt.Fprintf(&b, "  server-count: %d\n", servers)
	if servers > 1 {
		b.WriteString("  reuseport: yes\n")
	}
	b.WriteString("  username: \"\"\n") // stay root: it only reads files in dir
	b.WriteString("  chroot: \"\"\n")
	b.WriteString("  zonesdir: \"\"\n")
	b.WriteString("  database: \"\"\n")
	fmt.Fprintf(&b, "  zonelistfile: %q\n", filepath.Join(dir, "zone.list"))
	b.WriteString("  xfrdfile: \"\"\n")
	fmt.Fprintf(&b, "  xfrdir: %q\n", dir)
	b.WriteString("  pidfile: \"\"\n")
	b.WriteString("  minimal-responses: yes\n")
	b.WriteString("  rrl-ratelimit: 0\n")
	b.WriteString("  rrl-whitelist-ratelimit: 0\n")
	b.WriteString("\nremote-control:\n  control-enable: no\n")
	b.WriteString("\nzone:\n")
	fmt.Fprintf(&b, "  name: %s\n", domain)
	fmt.Fprintf(&b, "  zonefile: %q\n", filepath.Join(dir, domain+".zone"))
	return b.String()
}

type nsdServer struct {
	proc    *proc
	version string
}

func (n *nsdServer) server() *server {
	return &server{name: "NSD", port: nsdPort, proc: n.proc, version: n.version}
}

// startNSD writes the zone and config, checks the config with
// nsd-checkconf, starts nsd in the foreground and waits until it answers.
func startNSD(ctx context.Context, l *lab, addr netip.Addr, servers int) (*nsdServer, error) {
	dir := filepath.Join(l.dir, "nsd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	zone := filepath.Join(dir, domain+".zone")
	conf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(zone, []byte(zoneFile(addr)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, []byte(nsdConf(dir, servers)), 0o644); err != nil {
		return nil, err
	}
	if _, err := l.run(ctx, cmdTimeout, nil, "nsd-checkconf", conf); err != nil {
		return nil, fmt.Errorf("nsd: %w", err)
	}
	n := &nsdServer{version: nsdVersion(ctx)}
	p, err := l.start("nsd", nil, "nsd", "-d", "-c", conf)
	if err != nil {
		return nil, err
	}
	n.proc = p

	s := n.server()
	want := nodeName + ".node." + domain
	err = waitFor(ctx, p, 15*time.Second, "NSD to answer "+want, func() (bool, string) {
		ans, err := probeAnswers(ctx, l, s, []query{{want, "A"}})
		if err != nil {
			return false, err.Error()
		}
		return ans[0].Rcode == "NOERROR" && len(ans[0].Answer) == 1, fmt.Sprint(ans[0])
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// nsdVersion is "NSD 4.6.1", from the first line nsd -v prints.
func nsdVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "nsd", "-v").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if v, ok := strings.CutPrefix(strings.TrimSpace(first), "NSD version "); ok {
		return "NSD " + v
	}
	return "NSD"
}
