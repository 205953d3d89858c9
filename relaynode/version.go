package relaynode

import "runtime/debug"

// modulePath is the relay's Go module.
const modulePath = "github.com/clusterlink-relay/relay"

// moduleVersion returns the version of the relay module that Go recorded
// in the running binary: the main module's when the binary is the relay's
// own, else the dependency's. "(devel)" when there is none (a build from a
// checkout, or a binary without build information).
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if bi.Main.Path == modulePath && bi.Main.Version != "" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == modulePath && d.Version != "" {
			return d.Version
		}
	}
	return "(devel)"
}

// version returns the version the node reports: Config.Version, else the
// module's (moduleVersion).
func (n *Node) version() string {
	if n.cfg.Version != "" {
		return n.cfg.Version
	}
	return moduleVersion()
}
