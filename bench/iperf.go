package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

const iperfPort = 5201

// The paths, in table order.
const (
	pathUnderlay = "underlay (veth)"
	pathWG       = "bare wireguard-go"
	pathWeft     = "weft (embedded wireguard-go)"
	pathNebula   = "Nebula"
)

// A path is one way from a to b that iperf3 measures.
type path struct {
	Name  string
	Iface string // on a; the underlay's veth when empty
	Dest  string // b's address on this path
	MTU   int
	// Offload is whether the TUN device takes offloaded (GSO/GRO) packets:
	// "on", "off", or "–" for a path without a TUN.
	Offload string
	Note    string

	// Results, per stream count: one figure in bit/s per run.
	Results map[int][]float64
}

// startIperfServer runs one iperf3 server on b for the whole run; it
// listens on every address of b, so it serves all four paths. Tests are
// run one at a time.
func (b *bed) startIperfServer() error {
	p, err := b.start("iperf3-server", nil, b.b.inNS("iperf3", "-s", "-p", strconv.Itoa(iperfPort))...)
	if err != nil {
		return err
	}
	// Ready once it accepts a connection; a 1-second test is the simplest
	// probe that needs nothing else.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return b.waitFor(ctx, 15*time.Second, "iperf3 server on b", func() (bool, string) {
		if p.exited() {
			return false, p.logTail(5)
		}
		_, err := b.a.exec(ctx, nil, "iperf3", "-c", b.b.ip.String(), "-p", strconv.Itoa(iperfPort), "-t", "1", "-J")
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// iperfResult is the part of `iperf3 -J` output used here: the receiver's
// side of the sum over streams, and the error iperf3 reports in JSON.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs one iperf3 client on a towards dst and returns the received
// throughput in bit/s.
func (b *bed) iperf(ctx context.Context, dst string, streams int, d time.Duration) (float64, error) {
	secs := int(d.Round(time.Second) / time.Second)
	// Bounded: the test itself, then setup and teardown, plus slack for a
	// loaded machine.
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := []string{"netns", "exec", b.a.ns, "iperf3", "-c", dst, "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "5000"}
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	var r iperfResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %w", dst, streams, err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %s", dst, streams, r.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %w", dst, streams, err)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 -c %s -P %d: no end.sum_received.bits_per_second in its output", dst, streams)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// measureThroughput runs every path runs times for each stream count,
// in rounds (run 1 of every path, then run 2, ...), so that a noisy
// neighbour weighs on all paths alike; each round starts one path later
// than the one before, so that no path always follows the same one.
func (b *bed) measureThroughput(ctx context.Context, o options, paths []*path) error {
	for _, p := range paths {
		p.Results = map[int][]float64{}
	}
	total := o.runs * len(o.streams) * len(paths)
	n := 0
	for run := 1; run <= o.runs; run++ {
		for _, streams := range o.streams {
			for k := range paths {
				p := paths[(k+run-1)%len(paths)]
				n++
				fmt.Fprintf(os.Stderr, "bench: iperf3 %d/%d: %s, -P %d, run %d ... ", n, total, p.Name, streams, run)
				bps, err := b.iperf(ctx, p.Dest, streams, o.duration)
				if err != nil {
					fmt.Fprintln(os.Stderr, "failed")
					if derr := b.dead(); derr != nil {
						return fmt.Errorf("%w (%v)", err, derr)
					}
					return err
				}
				fmt.Fprintf(os.Stderr, "%.2f Gbit/s\n", bps/1e9)
				p.Results[streams] = append(p.Results[streams], bps)
			}
		}
	}
	return nil
}

// describePath fills in the MTU and TUN offload of the path's interface
// on a.
func (b *bed) describePath(p *path) error {
	iface := p.Iface
	if iface == "" {
		iface = b.a.iface
	}
	l, err := b.a.link(context.Background(), iface)
	if err != nil {
		return err
	}
	p.MTU = l.MTU
	p.Offload = "–"
	if l.Kind == "tun" {
		p.Offload = "off"
		if l.VnetHdr {
			p.Offload = "on"
		}
	}
	return nil
}

// version runs `name args` and returns the first line of its output.
func version(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
