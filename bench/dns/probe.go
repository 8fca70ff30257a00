package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// probeCmd is the hidden subcommand this program runs itself as, inside
// the namespace (through ip netns exec), to ask a server on the
// namespace's loopback: the answers to a few queries, or the latency of
// queries sent one at a time.
const probeCmd = "__probe"

// An answer is a server's reply to one query, in presentation format, each
// section sorted, with the SOA serial zeroed: weft's grows with every table
// it builds, and it is no part of what the benchmark compares.
type answer struct {
	Query      string   `json:"query"`
	Rcode      string   `json:"rcode"`
	Answer     []string `json:"answer"`
	Authority  []string `json:"authority"`
	Additional []string `json:"additional"`
}

// latencies are the round trips of the sequential queries.
type latencies struct {
	Nanos  []int64 `json:"nanos"`
	Errors int     `json:"errors"` // queries with no (matching) reply in time
	First  string  `json:"first_error,omitempty"`
}

const probeTimeout = 2 * time.Second // per query

func probeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(probeCmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "", "answers or latency")
	port := fs.Int("port", 0, "server port on 127.0.0.1")
	queries := fs.String("queries", "", "answers: queries, \"name type\" separated by commas")
	file := fs.String("file", "", "latency: dnsperf query file, sent in order, cycled")
	n := fs.Int("n", 1000, "latency: queries measured")
	warmup := fs.Int("warmup", 200, "latency: queries sent first and not measured")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	server := fmt.Sprintf("127.0.0.1:%d", *port)
	var out any
	var err error
	switch *mode {
	case "answers":
		out, err = askAll(server, parseQueries(strings.Split(*queries, ",")))
	case "latency":
		var lines []string
		if lines, err = readLines(*file); err == nil {
			out, err = measure(server, parseQueries(lines), *n, *warmup)
		}
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", probeCmd, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", probeCmd, err)
		return 1
	}
	return 0
}

func parseQueries(lines []string) []query {
	var qs []query
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 2 {
			qs = append(qs, query{f[0], f[1]})
		}
	}
	return qs
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

func newQuery(q query) (*dns.Msg, error) {
	t, ok := dns.StringToType[q.qtype]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", q.qtype)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(q.name), t)
	return m, nil
}

// askAll asks each query once over UDP, without EDNS0 as dnsperf does.
func askAll(server string, qs []query) ([]answer, error) {
	c := &dns.Client{Net: "udp", Timeout: probeTimeout}
	var out []answer
	for _, q := range qs {
		m, err := newQuery(q)
		if err != nil {
			return nil, err
		}
		r, _, err := c.Exchange(m, server)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		out = append(out, answer{
			Query:      q.String(),
			Rcode:      dns.RcodeToString[r.Rcode],
			Answer:     present(r.Answer),
			Authority:  present(r.Ns),
			Additional: present(r.Extra),
		})
	}
	return out, nil
}

func present(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			soa = dns.Copy(soa).(*dns.SOA)
			soa.Serial = 0
			rr = soa
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// measure sends warmup+n queries one at a time on one connected UDP socket
// and times each from write to matching reply. The queries are packed
// beforehand, so that the client adds as little as it can to what it
// measures.
func measure(server string, qs []query, n, warmup int) (*latencies, error) {
	if len(qs) == 0 {
		return nil, errors.New("no queries")
	}
	packed := make([][]byte, len(qs))
	for i, q := range qs {
		m, err := newQuery(q)
		if err != nil {
			return nil, err
		}
		if packed[i], err = m.Pack(); err != nil {
			return nil, err
		}
	}
	conn, err := net.Dial("udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	res := &latencies{Nanos: make([]int64, 0, n)}
	buf := make([]byte, 4096)
	for i := range warmup + n {
		q := slices.Clone(packed[i%len(packed)])
		id := uint16(i)
		binary.BigEndian.PutUint16(q, id)
		start := time.Now()
		if _, err := conn.Write(q); err != nil {
			return nil, err
		}
		deadline := start.Add(probeTimeout)
		if err := conn.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		var took time.Duration
		for {
			k, err := conn.Read(buf)
			if err != nil {
				res.Errors++
				if res.First == "" {
					res.First = err.Error()
				}
				took = -1
				break
			}
			// A late reply to an earlier query that timed out: not ours.
			if k >= 12 && binary.BigEndian.Uint16(buf) == id {
				took = time.Since(start)
				break
			}
		}
		if i >= warmup && took >= 0 {
			res.Nanos = append(res.Nanos, took.Nanoseconds())
		}
	}
	return res, nil
}

// probe runs the probe subcommand in the namespace and decodes its JSON.
func probe(ctx context.Context, l *lab, timeout time.Duration, v any, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := l.run(ctx, timeout, nil, append([]string{self, probeCmd}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, v)
}

// probeAnswers asks s each of qs from inside the namespace.
func probeAnswers(ctx context.Context, l *lab, s *server, qs []query) ([]answer, error) {
	var lines []string
	for _, q := range qs {
		lines = append(lines, q.String())
	}
	var ans []answer
	err := probe(ctx, l, cmdTimeout+time.Duration(len(qs))*probeTimeout, &ans,
		"-mode", "answers", "-port", fmt.Sprint(s.port), "-queries", strings.Join(lines, ","))
	if err == nil && len(ans) != len(qs) {
		err = fmt.Errorf("%d answers to %d queries", len(ans), len(qs))
	}
	return ans, err
}

// sequentialLatency sends n queries of the query file to s one at a time.
func sequentialLatency(ctx context.Context, l *lab, s *server, queryFile string, n int) (*latencies, error) {
	var lat latencies
	// Bounded: n round trips of well under a millisecond each, or a
	// timeout per lost query, which the error count then shows.
	timeout := time.Minute + time.Duration(n)*time.Millisecond
	err := probe(ctx, l, timeout, &lat, "-mode", "latency", "-port", fmt.Sprint(s.port), "-file", queryFile, "-n", fmt.Sprint(n))
	if err != nil {
		return nil, fmt.Errorf("sequential queries to %s: %w", s.name, err)
	}
	return &lat, nil
}

// compareAnswers checks that weft and NSD give the same answers to every
// query of the mix, so that both are measured doing the same work. It
// waits (bounded) for weft's table to hold every service. The differences
// it accepts (NSD's minimal responses leave out the SRV targets' address
// in ADDITIONAL) come back as notes for the report.
func compareAnswers(ctx context.Context, l *lab, servers []*server) ([]string, error) {
	qs := distinctQueries()
	nx := map[string]bool{}
	for _, q := range nxQueries() {
		nx[q.String()] = true
	}
	var got [2][]answer
	for i, s := range servers {
		err := waitFor(ctx, s.proc, 15*time.Second, s.name+" to answer every query of the mix", func() (bool, string) {
			ans, err := probeAnswers(ctx, l, s, qs)
			if err != nil {
				return false, err.Error()
			}
			for _, a := range ans {
				if nx[a.Query] != (a.Rcode == "NXDOMAIN") || (!nx[a.Query] && len(a.Answer) == 0) {
					return false, fmt.Sprintf("%s: %s %v", a.Query, a.Rcode, a.Answer)
				}
			}
			got[i] = ans
			return true, ""
		})
		if err != nil {
			return nil, err
		}
	}
	var diffs []string
	extraDiffers := 0
	for i := range qs {
		w, n := got[0][i], got[1][i]
		if w.Rcode != n.Rcode || !slices.Equal(w.Answer, n.Answer) || !slices.Equal(w.Authority, n.Authority) {
			diffs = append(diffs, fmt.Sprintf("%s:\n    %s: %+v\n    %s: %+v", qs[i], servers[0].name, w, servers[1].name, n))
		}
		if !slices.Equal(w.Additional, n.Additional) {
			extraDiffers++
		}
	}
	if len(diffs) > 0 {
		return nil, fmt.Errorf("the servers answer differently, so the figures would not compare:\n  %s", strings.Join(diffs, "\n  "))
	}
	var notes []string
	if extraDiffers > 0 {
		notes = append(notes, fmt.Sprintf("Answers are the same (rcode, ANSWER, AUTHORITY) for all %d names; "+
			"on %d of them (the SRV names) weft also puts the target's A record in ADDITIONAL and NSD, "+
			"with minimal-responses, does not.", len(qs), extraDiffers))
	}
	return notes, nil
}
