package main

import (
	"flag"
	"fmt"
	"strings"
)

// envPrefix is the prefix of the environment variables that set flags:
// -admin-listen is RELAYNODE_ADMIN_LISTEN.
const envPrefix = "RELAYNODE_"

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets each flag whose environment variable is set. It runs
// before the command line is parsed, so a flag given there wins.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// flagGroups orders the flags into topics for -h.
type flagGroups struct {
	names []string
	flags [][]string
	// effective holds, for flags whose default 0 stands for the Config's
	// default, the value -h prints instead.
	effective map[string]string
}

func (g *flagGroups) add(topic string, flags ...string) {
	g.names = append(g.names, topic)
	g.flags = append(g.flags, flags)
}

func (g *flagGroups) usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: relaynode [flags]\n\n"+
		"Runs a clusterlink relay. SIGTERM or SIGINT drains it gracefully; a second\n"+
		"signal stops it at once. Every flag can also be set with an environment\n"+
		"variable, %sFLAG_NAME (e.g. %s); a flag on the command line wins.\n", envPrefix, envName("admin-listen"))
	for i, topic := range g.names {
		fmt.Fprintf(w, "\n%s:\n", topic)
		for _, name := range g.flags[i] {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			arg, help := flag.UnquoteUsage(f)
			line := "  -" + f.Name
			if arg != "" {
				line += " " + arg
			}
			fmt.Fprintf(w, "%s\n    \t%s", line, help)
			def := f.DefValue
			if d, ok := g.effective[f.Name]; ok {
				def = d
			}
			if def != "" && def != "0" && def != "0s" && def != "false" {
				fmt.Fprintf(w, " (default %s)", def)
			}
			fmt.Fprintf(w, " [%s]\n", envName(f.Name))
		}
	}
}
