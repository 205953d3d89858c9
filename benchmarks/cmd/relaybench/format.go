package main

import (
	"fmt"
	"math"
	"strconv"
)

// fmtUS formats a time in microseconds with a unit that keeps three
// significant digits: 85.2µs, 1.24ms, 2.10s.
func fmtUS(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return withUnitUS(v, sig3)
}

// withUnitUS formats a time in microseconds as µs, ms or s, whichever
// keeps the number below 1000, with num formatting the number.
func withUnitUS(v float64, num func(float64) string) string {
	switch {
	case v < 1000:
		return num(v) + "µs"
	case v < 1e6:
		return num(v/1e3) + "ms"
	default:
		return num(v/1e6) + "s"
	}
}

// sig3 formats v with three significant digits, without an exponent.
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// fmtRate formats a rate per second with thousands separated: 12,345/s.
func fmtRate(v float64) string { return fmtCount(int64(math.Round(v))) + "/s" }

// fmtCount formats n with comma thousands separators.
func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := false
	if n < 0 {
		neg, s = true, s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fmtKiB formats a byte count in KiB with one decimal.
func fmtKiB(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }

// fmtMBps formats a throughput in bytes per second as MB/s (10^6 B/s).
func fmtMBps(v float64) string { return fmtCount(int64(math.Round(v/1e6))) + " MB/s" }

// fmtMiB formats a byte count in MiB.
func fmtMiB(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}

// fmtTickUS formats a time in microseconds for an axis tick: as short as
// it can be, 50µs, 1ms, 2.5ms.
func fmtTickUS(v float64) string {
	if v == 0 {
		return "0"
	}
	return withUnitUS(v, func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) })
}
