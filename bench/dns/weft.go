package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ports inside the lab's namespace, where nothing else listens.
const (
	weftDNSPort = 8600 // weft's default dns.listen port
	nsdPort     = 8601
)

// The segment every host tagged nodeTag is a member of. The agent answers
// only names of hosts its policy lets it reach; without a segment it would
// answer NXDOMAIN for everything, itself included.
const benchPolicy = `segment "bench" {
  cidr    = "10.97.0.0/24"
  port    = 51899
  members = ["tag:` + nodeTag + `"]
}
`

// privateRunWireGuard gives the agent a mount namespace of its own with a
// private tmpfs on /run/wireguard, where wireguard-go puts its UAPI
// sockets: nothing of the host's is seen or left behind. unshare (without
// --fork) and sh's exec keep one process, the agent, whose group cleanup
// stops.
const privateRunWireGuard = `mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec "$0" "$@"`

// weftAgent is the single-server weft cluster of the benchmark.
type weftAgent struct {
	bin      string
	socket   string
	proc     *proc
	nodeAddr netip.Addr // what <node>.node.<domain> resolves to
	version  string
}

func (w *weftAgent) env() []string { return []string{"WEFT_SOCKET=" + w.socket} }

func (w *weftAgent) server() *server {
	return &server{name: "weft", port: weftDNSPort, proc: w.proc, version: w.version}
}

// agentConfig is a bootstrapping server with the DNS server on
// weftDNSPort and the benchmark's services, with no checks: a service
// without a check is healthy.
func agentConfig(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\n", nodeName)
	fmt.Fprintf(&b, "data_dir  = %q\n", filepath.Join(dir, "data"))
	fmt.Fprintf(&b, "socket    = %q\n", filepath.Join(dir, "weft.sock"))
	fmt.Fprintf(&b, "bind_addr = \"127.0.0.1\"\nserver    = true\nbootstrap = true\n")
	fmt.Fprintf(&b, "tags      = [%q]\n", nodeTag)
	fmt.Fprintf(&b, "log_level = \"warn\"\n\n")
	fmt.Fprintf(&b, "dns {\n  listen = [\"127.0.0.1:%d\"]\n  ttl    = \"%ds\"\n}\n", weftDNSPort, ttl)
	for _, s := range services {
		fmt.Fprintf(&b, "\nservice %q {\n  port = %d\n}\n", s.name, s.port)
	}
	return b.String()
}

// startWeft writes the config and policy, starts the agent and waits until
// its resolver answers for the node.
func startWeft(ctx context.Context, l *lab, bin string) (*weftAgent, error) {
	w := &weftAgent{bin: bin, socket: filepath.Join(l.dir, "weft.sock")}
	cfg := filepath.Join(l.dir, "agent.hcl")
	pol := filepath.Join(l.dir, "policy.hcl")
	if err := os.WriteFile(cfg, []byte(agentConfig(l.dir)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o644); err != nil {
		return nil, err
	}
	for _, argv := range [][]string{{bin, "validate", cfg}, {bin, "policy", "validate", pol}} {
		if _, err := l.run(ctx, cmdTimeout, nil, argv...); err != nil {
			return nil, fmt.Errorf("weft: %w", err)
		}
	}
	if out, err := l.run(ctx, cmdTimeout, nil, bin, "version", "-json"); err == nil {
		var v struct{ Version, Go string }
		if json.Unmarshal(out, &v) == nil {
			w.version = fmt.Sprintf("weft %s (%s)", v.Version, v.Go)
		}
	}

	p, err := l.start("weft", w.env(), "unshare", "--mount", "--propagation", "private",
		"sh", "-c", privateRunWireGuard, bin, "agent", "-config-file", cfg)
	if err != nil {
		return nil, err
	}
	w.proc = p

	err = waitFor(ctx, p, 30*time.Second, "weft status: ready", func() (bool, string) {
		out, err := l.run(ctx, cmdTimeout, w.env(), bin, "status", "-json")
		if err != nil {
			return false, err.Error()
		}
		var st struct {
			Ready  bool
			Checks []struct {
				Name   string
				OK     bool
				Reason string
			}
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return false, err.Error()
		}
		var notOK []string
		for _, c := range st.Checks {
			if !c.OK {
				notOK = append(notOK, c.Name+": "+c.Reason)
			}
		}
		return st.Ready, "not ready: " + strings.Join(notOK, "; ")
	})
	if err != nil {
		return nil, err
	}

	err = waitFor(ctx, p, 15*time.Second, "weft policy apply", func() (bool, string) {
		if _, err := l.run(ctx, cmdTimeout, w.env(), bin, "policy", "apply", pol); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		return nil, err
	}

	name := nodeName + ".node." + domain
	err = waitFor(ctx, p, 30*time.Second, "weft dns query "+name, func() (bool, string) {
		out, err := l.run(ctx, cmdTimeout, w.env(), bin, "dns", "query", "-json", name, "A")
		if err != nil {
			return false, err.Error()
		}
		var ans struct {
			Rcode  string
			Answer []string
		}
		if err := json.Unmarshal(out, &ans); err != nil {
			return false, err.Error()
		}
		if ans.Rcode != "NOERROR" || len(ans.Answer) == 0 {
			return false, strings.TrimSpace(string(out))
		}
		// "bench.node.weft.internal.\t5\tIN\tA\t10.97.0.1"
		f := strings.Fields(ans.Answer[0])
		a, err := netip.ParseAddr(f[len(f)-1])
		if err != nil {
			return false, ans.Answer[0]
		}
		w.nodeAddr = a
		return true, ""
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// captureCPUProfile fetches a CPU profile of the agent over its admin
// socket (where weft serves pprof) for d, in the background; the channel
// gets the outcome.
func (w *weftAgent) captureCPUProfile(ctx context.Context, path string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	secs := max(int(d/time.Second), 1)
	go func() {
		c := &http.Client{
			Timeout: d + 10*time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dl net.Dialer
				return dl.DialContext(ctx, "unix", w.socket)
			}},
		}
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://weft/debug/pprof/profile?seconds=%d", secs), nil)
		if err != nil {
			done <- err
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			done <- fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}
