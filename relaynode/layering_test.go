package relaynode_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering checks the layering rules (docs/ARCHITECTURE.md): wire uses the
// standard library only, and endpoints never pulls in the actor engine.
func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/clusterlink-relay/relay/"
	for _, d := range deps(mod + "wire") {
		if d != mod+"wire" {
			t.Errorf("wire imports non-standard package %s", d)
		}
	}
	for _, d := range deps(mod + "endpoints") {
		if strings.Contains(d, "protoactor") || d == mod+"actors" || d == mod+"relaynode" {
			t.Errorf("endpoints imports %s", d)
		}
	}
}
