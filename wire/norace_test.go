//go:build !race

package wire_test

// raceOn reports whether the race detector is on. Allocation counts are
// not asserted under it: race builds may allocate where others do not.
const raceOn = false
