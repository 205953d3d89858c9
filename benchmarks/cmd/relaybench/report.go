package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// report prints the header, the table and the notes to stdout.
func (b *bench) report() {
	w := b.stdout
	r := b.res
	m := r.Machine
	fmt.Fprintf(w, "relaybench  %s\n", r.Timestamp.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(w, "command:  %s\n", r.Command)
	fmt.Fprintf(w, "machine:  %s/%s, %d CPUs (GOMAXPROCS %d), %s, %s", m.GOOS, m.GOARCH, m.NumCPU, m.GOMAXPROCS, m.GoVersion, m.Kernel)
	if m.CPU != "" {
		fmt.Fprintf(w, ", %s", m.CPU)
	}
	fmt.Fprintf(w, "\nrelay:    %s\n\n", r.Relay)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tTARGET\tFIGURES\tRATIO\tTARGET\tSTATUS")
	prev := ""
	for _, row := range b.rows {
		mode := row.mode
		if mode == prev {
			mode = ""
		}
		prev = row.mode
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mode, row.target, row.figures, dash(row.ratio), dash(row.goal), row.status)
	}
	tw.Flush()

	var met, missed, na int
	for _, c := range r.Checks {
		switch c.Status {
		case statusMet:
			met++
		case statusMissed:
			missed++
		case statusNA:
			na++
		}
	}
	fmt.Fprintf(w, "\nchecks: %d met, %d missed, %d n/a", met, missed, na)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, ", %d modes failed", len(r.Errors))
	}
	fmt.Fprintln(w)

	for _, rc := range r.RelayCounters {
		fmt.Fprintf(w, "relay %s: %s\n", rc.Relay, rc.summary())
	}
	if r.Idle != nil {
		fmt.Fprintf(w, "\nidle method: %s\n", r.Idle.Method)
	}
	if r.Listeners != nil {
		fmt.Fprintf(w, "\nlisteners method: %s\n", r.Listeners.Method)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// summary renders a relay's counters on one line.
func (rc relayCounters) summary() string {
	if rc.Error != "" {
		return "counters unknown: " + rc.Error
	}
	var parts []string
	keys := make([]string, 0, len(rc.Dials))
	for k := range rc.Dials {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := rc.Dials[k]; v != 0 || k == "spliced" {
			parts = append(parts, fmt.Sprintf("%s=%s", k, fmtCount(v)))
		}
	}
	s := "dials " + strings.Join(parts, " ")
	if f := rc.failures(); f == 0 {
		s += " (no failed dial)"
	}
	if len(rc.Refusals) > 0 {
		s += "; refusals: " + strings.Join(rc.Refusals, ", ")
	}
	return s
}

// dash returns s, or "—" for an empty s.
func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// writeOut writes results.json and the plots of the modes that ran into
// dir, and records the file names in b.written.
func (b *bench) writeOut(dir string) error {
	data, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	files := map[string][]byte{"results.json": append(data, '\n')}
	if len(b.res.Latency) > 0 {
		files["latency.svg"] = latencySVG(b.res)
	}
	if len(b.res.Rate) > 0 {
		files["rate.svg"] = rateSVG(b.res)
	}
	if len(b.res.Bulk) > 0 {
		files["bulk.svg"] = bulkSVG(b.res)
	}
	if len(b.res.Mailbox) > 0 {
		files["mailbox.svg"] = mailboxSVG(b.res)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		b.written = append(b.written, path)
	}
	return nil
}
