package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// results is everything a run measured, as results.json holds it: raw
// figures and percentiles, the machine, the command and the time.
type results struct {
	Tool      string    `json:"tool"`
	Command   string    `json:"command"`
	Timestamp time.Time `json:"timestamp"`
	Machine   machine   `json:"machine"`
	Relay     string    `json:"relay"` // "in-process host:port" or the -relay address
	Settings  settings  `json:"settings"`

	Latency   []latencyRun     `json:"latency,omitempty"`
	Rate      []rateStats      `json:"rate,omitempty"`
	Bulk      []bulkRun        `json:"bulk,omitempty"`
	Idle      *idleResult      `json:"idle,omitempty"`
	Listeners *listenersResult `json:"listeners,omitempty"`
	Mailbox   []mailboxRun     `json:"mailbox,omitempty"`
	Stalled   *stalledRun      `json:"stalled,omitempty"`

	Checks        []check            `json:"checks"`         // each figure against its target
	RelayCounters []relayCounters    `json:"relay_counters"` // each relay's own dial and refusal counts
	ModeSeconds   map[string]float64 `json:"mode_seconds"`   // wall time of each mode
	Notes         []string           `json:"notes,omitempty"`
	Errors        []string           `json:"errors,omitempty"`
}

// settings are the sizes the run used, after defaults and -quick.
type settings struct {
	Modes           []string `json:"modes"`
	Quick           bool     `json:"quick"`
	LatencyDials    int      `json:"latency_dials"`
	LatencyWarmup   int      `json:"latency_warmup"`
	WarmPool        int      `json:"warm_pool"`
	RateSeconds     float64  `json:"rate_seconds"` // per target and concurrency
	RateSlices      int      `json:"rate_slices"`  // turns each rate-mode run is cut into
	Concurrency     []int    `json:"concurrency"`
	BulkBytesPerRun int64    `json:"bulk_bytes_per_run"`
	BulkReps        int      `json:"bulk_reps"`
	IdlePairs       int      `json:"idle_pairs"`
	Listeners       int      `json:"listeners"`
	MailboxDials    int      `json:"mailbox_dials"`
}

// machine describes where the run ran.
type machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	Kernel     string `json:"kernel"`
	CPU        string `json:"cpu,omitempty"`
	FDLimit    uint64 `json:"fd_limit,omitempty"`
}

// check is one figure against its target.
type check struct {
	Mode   string `json:"mode"`
	Target string `json:"target"`
	Goal   string `json:"goal"`  // the target, as the table states it
	Value  string `json:"value"` // the figure compared
	Status string `json:"status"`
}

// Statuses of a check or table row.
const (
	statusMet    = "met"
	statusMissed = "MISSED"
	statusNA     = "n/a"
	statusInfo   = "—"
	statusFailed = "FAILED"
)

// row is one line of the printed table.
type row struct {
	mode, target, figures, ratio, goal, status string
}

// newResults starts the results of a run of o with sizes sz.
func newResults(o options, sz sizes) *results {
	return &results{
		Tool:      "relaybench",
		Command:   o.command,
		Timestamp: time.Now().UTC(),
		Machine:   describeMachine(),
		Settings: settings{
			Modes: o.modes, Quick: o.quick,
			LatencyDials: sz.latencyDials, LatencyWarmup: sz.latencyWarmup, WarmPool: o.warm,
			RateSeconds: sz.rateFor.Seconds(), RateSlices: sz.rateSlices, Concurrency: sz.conc,
			BulkBytesPerRun: sz.bulkBytes, BulkReps: sz.bulkReps,
			IdlePairs: sz.idlePairs, Listeners: sz.listeners, MailboxDials: sz.mailboxDials,
		},
		ModeSeconds: map[string]float64{},
		Notes:       o.notes,
	}
}

// addCheck records a figure against its goal and adds it to the table.
func (b *bench) addCheck(r row, value string, met bool) {
	r.status = statusMissed
	if met {
		r.status = statusMet
	}
	b.rows = append(b.rows, r)
	b.res.Checks = append(b.res.Checks, check{Mode: r.mode, Target: r.target, Goal: r.goal, Value: value, Status: r.status})
}

// addNA records a figure that could not be measured against its goal.
func (b *bench) addNA(r row, why string) {
	r.status = statusNA
	b.rows = append(b.rows, r)
	b.res.Checks = append(b.res.Checks, check{Mode: r.mode, Target: r.target, Goal: r.goal, Value: why, Status: statusNA})
}

// addRow adds a row with no goal of its own (a baseline, or a figure for
// the record).
func (b *bench) addRow(r row) {
	if r.status == "" {
		r.status = statusInfo
	}
	b.rows = append(b.rows, r)
}

// describeMachine reads the platform, the Go version, the kernel and the
// CPU model.
func describeMachine() machine {
	m := machine{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/version"); err == nil {
		// "Linux version 6.1.0 (builder@host) (gcc ...) #1 SMP ...": keep
		// the release.
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.Kernel = f[0] + " " + f[2]
		} else {
			m.Kernel = strings.TrimSpace(string(b))
		}
	} else {
		var u syscall.Utsname
		if syscall.Uname(&u) == nil {
			m.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:])
		}
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		m.FDLimit = rl.Cur
	}
	return m
}

// utsString converts a NUL-terminated utsname field.
func utsString[T int8 | uint8](f []T) string {
	var b strings.Builder
	for _, c := range f {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// raiseFDLimit raises the soft limit on open files to the hard limit: the
// idle and listeners modes hold thousands of sockets. It returns a note
// when the limit could not be raised.
func raiseFDLimit() string {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Sprintf("could not read the fd limit: %v", err)
	}
	if rl.Cur >= rl.Max {
		return ""
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Sprintf("could not raise the fd limit to %d: %v", rl.Max, err)
	}
	return ""
}

// fdLimit returns the soft limit on open files, or 0 when unknown.
func fdLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return rl.Cur
}
