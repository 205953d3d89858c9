//go:build !race

package clusterproc

// raceBuilt reports whether this test binary was built with -race; the
// relaynode binary is then built with -race too.
const raceBuilt = false
