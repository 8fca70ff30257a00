package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/policy"
)

func init() {
	register("policy", "the policy: validate | plan | apply | show | explain", runPolicy)
}

const policyUsage = `usage:
  weft policy validate FILE              check a policy document (no agent needed)
  weft policy plan FILE [-json]          what it would change on every host
  weft policy apply FILE                 commit it (on a server); prints the new version
  weft policy show [-json]               the applied document
  weft policy explain FROM TO PROTO/PORT whether a flow is allowed, and by which rule`

func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("policy: %s", policyUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("policy "+sub, stderr)
	var f apiFlags
	f.register(fs, sub == "plan" || sub == "show" || sub == "explain")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := callCtx()
	defer cancel()
	switch sub {
	case "validate":
		name, src, err := readPolicy(fs.Args())
		if err != nil {
			return err
		}
		if _, err := policy.Parse(name, src); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "policy is valid")
		return nil
	case "plan":
		name, src, err := readPolicy(fs.Args())
		if err != nil {
			return err
		}
		plan, err := f.client().PlanPolicy(ctx, client.PolicyRequest{Filename: name, Source: string(src)})
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(stdout, plan)
		}
		changed := 0
		for _, h := range plan.Hosts {
			if len(h.Changes) == 0 {
				continue
			}
			changed++
			fmt.Fprintf(stdout, "%s:\n", h.Name)
			for _, c := range h.Changes {
				fmt.Fprintf(stdout, "  %s\n", c)
			}
		}
		fmt.Fprintf(stdout, "%d of %d hosts change\n", changed, len(plan.Hosts))
		return nil
	case "apply":
		name, src, err := readPolicy(fs.Args())
		if err != nil {
			return err
		}
		res, err := f.client().ApplyPolicy(ctx, client.PolicyRequest{Filename: name, Source: string(src), By: operator()})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "policy version %d applied\n", res.Version)
		return nil
	case "show":
		p, err := f.client().Policy(ctx)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(stdout, p)
		}
		fmt.Fprintf(stdout, "# version %d, from %s, applied %s by %s\n%s", p.Version, p.Filename, p.AppliedAt.Format("2006-01-02 15:04:05Z07:00"), p.AppliedBy, p.Source)
		if !strings.HasSuffix(p.Source, "\n") {
			fmt.Fprintln(stdout)
		}
		return nil
	case "explain":
		if fs.NArg() != 3 {
			return fmt.Errorf("policy explain: give FROM TO PROTO/PORT (e.g. web-1 db-1 tcp/5432)")
		}
		e, err := f.client().Explain(ctx, fs.Arg(0), fs.Arg(1), fs.Arg(2))
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(stdout, e)
		}
		verdict := "DENIED"
		if e.Allowed {
			verdict = "ALLOWED"
		}
		fmt.Fprintf(stdout, "%s: %s -> %s %s: %s\n", verdict, e.From, e.To, e.Port, e.Reason)
		return nil
	}
	return fmt.Errorf("policy: unknown subcommand %q\n%s", sub, policyUsage)
}

func readPolicy(args []string) (string, []byte, error) {
	if len(args) != 1 {
		return "", nil, fmt.Errorf("give exactly one policy file")
	}
	src, err := os.ReadFile(args[0])
	if err != nil {
		return "", nil, err
	}
	return filepath.Base(args[0]), src, nil
}

// operator names who applies a policy, for the record.
func operator() string {
	host, _ := os.Hostname()
	if u, err := user.Current(); err == nil {
		return u.Username + "@" + host
	}
	return host
}
