package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/weft-mesh/weft/client"
)

// apiFlags are the flags of every command that talks to the agent.
type apiFlags struct {
	socket string
	json   bool
}

func (f *apiFlags) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&f.socket, "socket", "", "the agent's admin socket (default $WEFT_SOCKET or "+client.DefaultSocket+")")
	if withJSON {
		fs.BoolVar(&f.json, "json", false, "print JSON")
	}
}

func (f *apiFlags) client() *client.Client { return client.New(client.SocketFromEnv(f.socket)) }

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), client.DefaultTimeout)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows aligned in columns.
func table(w io.Writer, header []any, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(cells []any) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}
