//go:build race

package endpoints_test

// raceOn reports whether the race detector is on; tests scale their sizes
// down under it.
const raceOn = true
