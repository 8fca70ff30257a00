package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func init() {
	register("segments", "this host's segment interfaces, addresses and peers", runSegments)
}

func runSegments(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("segments", stderr)
	var f apiFlags
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := callCtx()
	defer cancel()
	segs, err := f.client().Segments(ctx)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, segs)
	}
	if len(segs) == 0 {
		fmt.Fprintln(stdout, "no segments on this host")
		return nil
	}
	for i, s := range segs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s  %s  %s  %s  port %d\n", s.Name, s.Interface, s.Role, s.Address, s.ListenPort)
		rows := [][]any{}
		for _, p := range s.Peers {
			rows = append(rows, []any{p.Name, p.Endpoint, strings.Join(p.AllowedIPs, ","), handshakeAge(p.LastHandshake), p.RxBytes, p.TxBytes})
		}
		if err := table(stdout, []any{"  PEER", "ENDPOINT", "ALLOWED IPS", "HANDSHAKE", "RX", "TX"}, indent(rows)); err != nil {
			return err
		}
	}
	return nil
}

func handshakeAge(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func indent(rows [][]any) [][]any {
	for _, r := range rows {
		r[0] = "  " + fmt.Sprint(r[0])
	}
	return rows
}
