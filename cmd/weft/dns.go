package main

import (
	"fmt"
	"io"
)

func init() {
	register("dns", "ask this agent's resolver: weft dns query NAME [TYPE]", runDNS)
}

func runDNS(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "query" {
		return fmt.Errorf("dns: usage: weft dns query NAME [TYPE] [-json]")
	}
	fs := newFlags("dns query", stderr)
	var f apiFlags
	f.register(fs, true)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("dns query: give NAME and optionally TYPE (A, AAAA, SRV, PTR...)")
	}
	qtype := "A"
	if fs.NArg() == 2 {
		qtype = fs.Arg(1)
	}
	ctx, cancel := callCtx()
	defer cancel()
	ans, err := f.client().DNSQuery(ctx, fs.Arg(0), qtype)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, ans)
	}
	fmt.Fprintf(stdout, ";; %s from %s\n", ans.Rcode, ans.Server)
	for _, section := range []struct {
		name string
		rrs  []string
	}{{"ANSWER", ans.Answer}, {"AUTHORITY", ans.Authority}, {"ADDITIONAL", ans.Additional}} {
		if len(section.rrs) == 0 {
			continue
		}
		fmt.Fprintf(stdout, ";; %s\n", section.name)
		for _, rr := range section.rrs {
			fmt.Fprintln(stdout, rr)
		}
	}
	return nil
}
