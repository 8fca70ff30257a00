package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/weft-mesh/weft/internal/version"
)

func init() {
	register("version", "print the version", runVersion)
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]string{"version": version.Version, "go": runtime.Version()})
	}
	fmt.Fprintf(stdout, "weft %s (%s)\n", version.Version, runtime.Version())
	return nil
}
