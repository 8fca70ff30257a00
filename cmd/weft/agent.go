package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/config"
)

func init() {
	register("agent", "run the agent (in the foreground)", runAgent)
}

func runAgent(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent", stderr)
	var files, dirs multiFlag
	fs.Var(&files, "config-file", "an HCL config file (repeatable; later files win per key)")
	fs.Var(&dirs, "config-dir", "a directory of *.hcl files, read in name order (repeatable)")
	dev := fs.Bool("dev", false, "run a single-node server in a temporary data dir, for trying weft")
	cleanup := fs.Bool("cleanup", false, "remove every weft interface and the weft firewall table on this host, then exit (does not leave the cluster)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent: unexpected argument %q", fs.Arg(0))
	}
	load := func() (config.Runtime, error) { return config.Load(files, dirs) }
	var rt config.Runtime
	var err error
	switch {
	case *dev:
		if len(files)+len(dirs) > 0 {
			return fmt.Errorf("agent: -dev takes no config files")
		}
		dir, err := os.MkdirTemp("", "weft-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		rt = config.Dev(dir)
		load = func() (config.Runtime, error) { return rt, nil }
		fmt.Fprintf(stdout, "weft dev agent: data in %s (removed on exit)\n  export WEFT_SOCKET=%s\n", dir, rt.Socket)
	case len(files)+len(dirs) == 0:
		return fmt.Errorf("agent: give -config-file or -config-dir (or -dev)")
	default:
		if rt, err = load(); err != nil {
			return err
		}
	}
	// Everything the agent writes is for its own eyes: files its libraries
	// create (Raft's snapshots, say) stay private whatever umask it was
	// started with.
	syscall.Umask(0o077)
	a, err := agent.New(agent.Options{Runtime: rt, LogOutput: stderr})
	if err != nil {
		return err
	}
	if *cleanup {
		if err := a.Cleanup(); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "removed weft's interfaces and firewall table")
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			next, err := load()
			if err != nil {
				fmt.Fprintf(stderr, "weft: reload refused, keeping the running configuration:\n%v\n", err)
				continue
			}
			a.Reload(next)
		}
	}()
	return a.Run(ctx)
}
