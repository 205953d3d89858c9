package main

import (
	"fmt"
	"runtime/debug"
)

// version is the release this binary was built as, stamped at link time:
//
//	go build -ldflags "-X main.version=v0.1.0" ./relaynode/cmd/relaynode
//
// Empty (a plain go build) falls back to the module version Go records in
// the binary: v0.1.0 for go install ...@v0.1.0, "(devel)" in a checkout.
var version string

// buildVersion returns the binary's version: main.version when stamped,
// else the main module's version from the build information.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// versionString describes the build for -version: the version on the
// first line, then the module, the VCS revision and the Go version.
func versionString() string {
	s := "relaynode " + buildVersion()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s + "\n(no build information)"
	}
	s += "\nmodule " + bi.Main.Path
	var rev, at, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	if rev == "" {
		rev = "unknown (built without VCS stamping)"
	}
	s += fmt.Sprintf("\nrevision %s%s", rev, dirty)
	if at != "" {
		s += " at " + at
	}
	return s + "\n" + bi.GoVersion
}
