package main

import (
	"fmt"
	"io"
	"strings"
)

func init() {
	register("flows", "this host's firewall counters per rule and the sources it denied most", runFlows)
}

func runFlows(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("flows", stderr)
	var f apiFlags
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("flows: unexpected argument %q", fs.Arg(0))
	}
	ctx, cancel := callCtx()
	defer cancel()
	flows, err := f.client().Flows(ctx)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, flows)
	}
	if len(flows.Rules) == 0 {
		fmt.Fprintln(stdout, "no firewall applied on this host yet")
	} else {
		rows := make([][]any, 0, len(flows.Rules))
		for _, r := range flows.Rules {
			rows = append(rows, []any{r.Counter, r.Action, dash(strings.Join(r.Segments, ",")), dash(strings.Join(r.Interfaces, ",")), r.Packets, r.Bytes})
		}
		if err := table(stdout, []any{"COUNTER", "ACTION", "SEGMENTS", "INTERFACES", "PACKETS", "BYTES"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout)
	if len(flows.Denied) == 0 {
		fmt.Fprintln(stdout, "no denied sources in the last 10 minutes")
		return nil
	}
	rows := make([][]any, 0, len(flows.Denied))
	for _, d := range flows.Denied {
		rows = append(rows, []any{dash(d.Peer), d.Addr, dash(d.Segment), d.Interface, d.Packets})
	}
	return table(stdout, []any{"DENIED PEER", "ADDRESS", "SEGMENT", "INTERFACE", "PACKETS"}, rows)
}
