package main

import (
	"fmt"
	"io"
	"os"

	"github.com/weft-mesh/weft/config"
)

func init() {
	register("validate", "check config files or directories without starting", runValidate)
}

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("validate: give one or more config files or directories")
	}
	var files, dirs []string
	for _, p := range fs.Args() {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			dirs = append(dirs, p)
		} else {
			files = append(files, p)
		}
	}
	if _, err := config.Load(files, dirs); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "configuration is valid")
	return nil
}
