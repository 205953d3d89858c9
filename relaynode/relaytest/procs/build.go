package procs

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// RelayPackage is the import path of the relaynode binary Build builds.
const RelayPackage = "github.com/clusterlink-relay/relay/relaynode/cmd/relaynode"

// Build builds the relaynode binary into dir, with -race if race, and
// returns its path. ctx bounds the build (a cold -race build on a small
// machine takes minutes).
func Build(ctx context.Context, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "relaynode")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, RelayPackage)
	start := time.Now()
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %v (%v): %w\n%s", args, time.Since(start).Round(time.Millisecond), err, out)
	}
	return bin, nil
}
