package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
)

// firstCode returns the first `code` span of a markdown table cell, or "".
func firstCode(cell string) string {
	return allCode(cell, 1)
}

// allCode returns the `code` spans of s, at most n (n < 0: all), joined by
// a space.
func allCode(s string, n int) string {
	var out []string
	for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(s, n) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

// cells splits a markdown table row into its cells.
func cells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(strings.TrimSuffix(row, "|"), "|")
	var out []string
	for _, c := range strings.Split(row, " | ") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}

// canon makes a default comparable: a zero number or duration is "0".
func canon(s string) string {
	switch s {
	case "", "0s":
		return "0"
	}
	return s
}

// formatField formats a Config field's value as a flag prints it.
func formatField(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return v.String()
}

// helpDefaults returns each flag's default as -h prints it ("" for none).
func helpDefaults(t *testing.T) map[string]string {
	t.Helper()
	var out bytes.Buffer
	if err := run([]string{"-h"}, io.Discard, &out, nil); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	got := map[string]string{}
	lines := strings.Split(out.String(), "\n")
	flagLine := regexp.MustCompile(`^  -(\S+)`)
	def := regexp.MustCompile(`\(default ([^)]*)\) \[RELAYNODE_`)
	for i := 0; i+1 < len(lines); i++ {
		m := flagLine.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		got[m[1]] = ""
		if d := def.FindStringSubmatch(lines[i+1]); d != nil {
			got[m[1]] = d[1]
		}
	}
	return got
}

func readDoc(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile("../../../docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

// TestDefaultsAgree checks that every default is stated once and shown
// the same everywhere: the limit flags, not given, leave the Config zero
// (so the binary runs on the Config's own defaults); -h prints for each
// flag the zero Config's default; and the tables of DOCUMENTATION.md (the
// flags, the Config fields) and OPERATIONS.md (the limits) say the same.
func TestDefaultsAgree(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var cfg relaynode.Config
	names := limitFlags(fs, &cfg)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, relaynode.Config{}) {
		t.Fatalf("limit flags not given set %+v, want the zero Config", cfg)
	}
	zero := reflect.ValueOf(relaynode.Config{}.WithDefaults())
	help := helpDefaults(t)

	// DOCUMENTATION.md's flag table: flag → default, Config field.
	type docFlag struct{ def, field string }
	flags := map[string]docFlag{}
	fields := map[string]string{} // Config table: field → default
	flagRow := regexp.MustCompile("^\\| `-([a-z0-9-]+)")
	fieldRef := regexp.MustCompile("`Config\\.(\\w+)`")
	fieldRow := regexp.MustCompile("^\\| `([A-Z]\\w*)` \\|")
	for _, l := range readDoc(t, "DOCUMENTATION.md") {
		if m := flagRow.FindStringSubmatch(l); m != nil {
			c := cells(l)
			f := docFlag{def: firstCode(c[1])}
			if r := fieldRef.FindStringSubmatch(c[len(c)-1]); r != nil {
				f.field = r[1]
			}
			flags[m[1]] = f
		} else if m := fieldRow.FindStringSubmatch(l); m != nil && len(cells(l)) == 4 {
			fields[m[1]] = firstCode(cells(l)[2])
		}
	}
	// OPERATIONS.md's limits table: flag → default, the n-th code span of
	// the default cell for the n-th flag of the row.
	ops := map[string]string{}
	inLimits := false
	for _, l := range readDoc(t, "OPERATIONS.md") {
		if strings.HasPrefix(l, "## ") {
			inLimits = l == "## Limits"
			continue
		}
		if !inLimits || !strings.HasPrefix(l, "| ") {
			continue
		}
		c := cells(l)
		if len(c) != 5 || !strings.Contains(c[2], "`-") {
			continue
		}
		fl := strings.Fields(allCode(c[2], -1))
		defs := strings.Fields(allCode(c[3], -1))
		for i, f := range fl {
			if i < len(defs) {
				ops[strings.TrimPrefix(f, "-")] = defs[i]
			} else {
				ops[strings.TrimPrefix(f, "-")] = "(none)"
			}
		}
	}

	for _, name := range names {
		df, ok := flags[name]
		if !ok || df.field == "" {
			t.Errorf("-%s: no row naming its Config field in DOCUMENTATION.md's flag table", name)
			continue
		}
		fv := zero.FieldByName(df.field)
		if !fv.IsValid() {
			t.Errorf("-%s: DOCUMENTATION.md names Config.%s, which does not exist", name, df.field)
			continue
		}
		want := canon(formatField(fv))
		if got := canon(help[name]); got != want {
			t.Errorf("-%s: -h prints default %q, the zero Config has %q", name, got, want)
		}
		if got := canon(df.def); got != want {
			t.Errorf("-%s: DOCUMENTATION.md's flag table says %q, the zero Config has %q", name, got, want)
		}
		if got, ok := fields[df.field]; !ok {
			t.Errorf("Config.%s: no row in DOCUMENTATION.md's Config table", df.field)
		} else if canon(got) != want {
			t.Errorf("Config.%s: DOCUMENTATION.md's Config table says %q, the zero Config has %q", df.field, got, want)
		}
		if got, ok := ops[name]; !ok {
			t.Errorf("-%s: not in OPERATIONS.md's limits table", name)
		} else if canon(got) != want {
			t.Errorf("-%s: OPERATIONS.md's limits table says %q, the zero Config has %q", name, got, want)
		}
	}
	// Every other flag: DOCUMENTATION.md's default is what -h prints.
	for name, h := range help {
		if _, documented := flags[name]; !documented {
			t.Errorf("-%s: not in DOCUMENTATION.md's flag table", name)
			continue
		}
		if got := canon(flags[name].def); got != canon(h) {
			t.Errorf("-%s: DOCUMENTATION.md says default %q, -h %q", name, got, h)
		}
	}
}

// TestDialBurstFollowsRate checks that -dial-burst, not given, follows
// -dial-rate (2 × it), and that a given one stays.
func TestDialBurstFollowsRate(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 40000},
		{[]string{"-dial-rate", "1"}, 2},
		{[]string{"-dial-rate", "300"}, 600},
		{[]string{"-dial-rate", "300", "-dial-burst", "5"}, 5},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		var cfg relaynode.Config
		limitFlags(fs, &cfg)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if got := cfg.WithDefaults().DialBurst; got != tt.want {
			t.Errorf("%q: burst %d, want %d", tt.args, got, tt.want)
		}
	}
}
