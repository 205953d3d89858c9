package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clusterlink-relay/relay/actors"
)

// mailboxSetting is one relay configuration of the mailbox sweep: one
// actor kind's mailbox changed from the defaults, or the defaults.
type mailboxSetting struct {
	Kind    string         `json:"kind"` // the actor kind changed, or "defaults"
	Mailbox actors.Mailbox `json:"-"`
	Label   string         `json:"mailbox"` // the flag form of Mailbox, or "defaults"
	mbs     actors.Mailboxes
}

// name is how the table and the plot show the setting: kind=mailbox, or
// the defaults.
func (s mailboxSetting) name() string {
	if s.Kind == "defaults" {
		return s.Label
	}
	return s.Kind + "=" + s.Label
}

// mailboxRun is the outcome of one setting.
type mailboxRun struct {
	mailboxSetting
	Rate    rateStats    `json:"rate"`    // 32 loops for the rate duration
	Latency latencyStats `json:"latency"` // sequential dials
	// RateVsDefaults and P99VsDefaults compare with the first defaults run.
	RateVsDefaults float64 `json:"rate_vs_defaults"`
	P99VsDefaults  float64 `json:"p99_vs_defaults"`
}

// mailboxSweep returns the settings of the sweep: the defaults, then for
// the directory and pending kinds, which every dial passes through, each
// mailbox kind and two bounded sizes; for the listener and pair kinds the
// default and one alternative each; and the defaults again at the end, to
// show how far the machine drifted over the sweep.
func mailboxSweep() []mailboxSetting {
	def := actors.DefaultMailboxes()
	bounded := func(n int) actors.Mailbox { return actors.Mailbox{Kind: actors.MailboxBounded, Size: n} }
	unb := actors.Mailbox{Kind: actors.MailboxUnbounded}
	lockfree := actors.Mailbox{Kind: actors.MailboxUnboundedLockfree}
	full := []actors.Mailbox{unb, lockfree, bounded(64), bounded(1024)}
	out := []mailboxSetting{{Kind: "defaults", Label: "defaults", mbs: def}}
	for _, k := range []struct {
		kind  string
		cands []actors.Mailbox
		set   func(*actors.Mailboxes) *actors.Mailbox
	}{
		{"directory", full, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Directory }},
		{"pending", full, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Pending }},
		{"listener", []actors.Mailbox{unb, lockfree}, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Listener }},
		{"pair", []actors.Mailbox{unb, lockfree}, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Pair }},
	} {
		for _, mb := range k.cands {
			mbs := def
			if *k.set(&mbs) == mb {
				continue // the defaults row already has it
			}
			*k.set(&mbs) = mb
			out = append(out, mailboxSetting{Kind: k.kind, Mailbox: mb, Label: mb.String(), mbs: mbs})
		}
	}
	return append(out, mailboxSetting{Kind: "defaults", Label: "defaults (again)", mbs: def})
}

// runMailbox measures each setting on a fresh in-process relay: the dial
// rate with 32 loops, then sequential dials for the p99.
func (b *bench) runMailbox(ctx context.Context, sweep []mailboxSetting) error {
	if !b.relay.inProcess() {
		return errors.New("mailbox mode needs the in-process relay (it starts a fresh relay per setting): drop -relay")
	}
	var runs []mailboxRun
	for i, set := range sweep {
		label := fmt.Sprintf("mailbox %d/%d: %s", i+1, len(sweep), set.name())
		r, err := b.mailboxOne(ctx, set, label)
		if err != nil {
			return fmt.Errorf("%s: %w", set.name(), err)
		}
		runs = append(runs, r)
	}
	for i := range runs {
		runs[i].RateVsDefaults = runs[i].Rate.PerSecond / runs[0].Rate.PerSecond
		runs[i].P99VsDefaults = runs[i].Latency.P99US / runs[0].Latency.P99US
	}
	b.res.Mailbox = runs
	for _, r := range runs {
		figs := fmt.Sprintf("%s at c=32  p50 %s  p99 %s", fmtRate(r.Rate.PerSecond), fmtUS(r.Latency.P50US), fmtUS(r.Latency.P99US))
		if e := r.Rate.Errors + int64(r.Latency.Errors); e > 0 {
			figs += fmt.Sprintf("  (%d errors)", e)
		}
		b.addRow(row{mode: "mailbox", target: r.name(), figures: figs,
			ratio: fmt.Sprintf("rate %.2f×, p99 %.2f× defaults", r.RateVsDefaults, r.P99VsDefaults),
			goal:  "table for docs/TUNING.md"})
	}
	return nil
}

// mailboxOne starts a relay with setting set, registers an echo server,
// warms up, and measures.
func (b *bench) mailboxOne(ctx context.Context, set mailboxSetting, label string) (_ mailboxRun, err error) {
	b.prog.step("%s: starting relay", label)
	cfg := benchConfig(b.log)
	cfg.Mailboxes = set.mbs
	relay, err := startRelay(cfg)
	if err != nil {
		return mailboxRun{}, err
	}
	defer func() {
		b.noteRelay(ctx, "mailbox "+set.name(), relay)
		err = errors.Join(err, relay.close())
	}()
	name := b.name("mbox")
	echo, err := listenRelay(ctx, relay.addr, name, echoConn)
	if err != nil {
		return mailboxRun{}, err
	}
	defer echo.close()
	dial := relayDialer(newDialer(relay.addr), name)
	if failed, err := runDials(ctx, dial, refConc, 200); failed > 0 {
		return mailboxRun{}, fmt.Errorf("warm-up: %d dials failed: %w", failed, err)
	}
	b.prog.step("%s: rate, %v", label, b.sz.rateFor)
	st := measureRate(ctx, targetRelay, dial, refConc, b.sz.rateFor, b.prog, label)
	if err := ctx.Err(); err != nil {
		return mailboxRun{}, err
	}
	b.prog.step("%s: %d sequential dials", label, b.sz.mailboxDials)
	var samples []time.Duration
	errs := 0
	for range b.sz.mailboxDials {
		if err := ctx.Err(); err != nil {
			return mailboxRun{}, err
		}
		d, err := roundTrip(ctx, dial)
		if err != nil {
			errs++
			continue
		}
		samples = append(samples, d)
	}
	return mailboxRun{mailboxSetting: set, Rate: st, Latency: summarize(samples, errs)}, nil
}
