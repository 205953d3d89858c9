package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits the repository's Dockerfile into its stages, each
// a list of instructions starting with its FROM.
func parseDockerfile(t *testing.T) [][]instruction {
	t.Helper()
	b, err := os.ReadFile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", in.cmd)
			}
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if tl := strings.TrimSpace(l); strings.HasPrefix(tl, "#") || (tl == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	flush()
	return stages
}

// all returns the args of every instruction cmd in stage.
func all(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// port returns the port of a host:port or URL.
func port(t *testing.T, s string) string {
	t.Helper()
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Port()
	}
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatalf("no port in %q: %v", s, err)
	}
	return p
}

// TestDockerfile checks the image recipe without building it (no image
// builder on the test machine): two stages, a static, trimmed, stamped
// build in golang:1.26, a non-root final stage that copies the binary from
// the build, EXPOSE exactly the public and admin ports the image's
// environment listens on, the public one the -listen default's, and a
// HEALTHCHECK in exec form (the final image has no shell) that the binary
// itself runs against the admin port's /healthz.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if from := build[0].args; !regexp.MustCompile(`^golang:1\.26\S* AS build$`).MatchString(from) {
		t.Errorf("build stage FROM %q, want golang:1.26 AS build", from)
	}
	runs := strings.Join(all(build, "RUN"), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "./relaynode/cmd/relaynode"} {
		if !strings.Contains(runs, want) {
			t.Errorf("build stage RUN lacks %q", want)
		}
	}
	if from := final[0].args; !strings.HasPrefix(from, "gcr.io/distroless/static") && from != "scratch" {
		t.Errorf("final stage FROM %q, want distroless/static or scratch", from)
	}
	if !slices.ContainsFunc(all(final, "COPY"), func(s string) bool { return strings.HasPrefix(s, "--from=build ") }) {
		t.Fatal("final stage does not COPY --from=build")
	}
	users := all(final, "USER")
	if len(users) == 0 {
		t.Fatal("final stage has no USER")
	}
	user, _, _ := strings.Cut(users[len(users)-1], ":")
	if user == "" || user == "root" || user == "0" {
		t.Errorf("final USER %q is root", users[len(users)-1])
	}

	env := map[string]string{}
	for _, e := range all(final, "ENV") {
		for _, kv := range strings.Fields(e) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("ENV %q: use the KEY=VALUE form", e)
			}
			env[k] = v
		}
	}
	var help bytes.Buffer
	_ = run([]string{"-h"}, io.Discard, &help, nil)
	def := regexp.MustCompile(`\(default (\S+)\) \[RELAYNODE_LISTEN\]`).FindStringSubmatch(help.String())
	if def == nil {
		t.Fatalf("-h gives no -listen default:\n%s", help.String())
	}
	public, admin := env["RELAYNODE_LISTEN"], env["RELAYNODE_ADMIN_LISTEN"]
	if public == "" || admin == "" {
		t.Fatalf("final stage ENV sets RELAYNODE_LISTEN %q, RELAYNODE_ADMIN_LISTEN %q; want both", public, admin)
	}
	if port(t, public) != port(t, def[1]) {
		t.Errorf("RELAYNODE_LISTEN %s: port differs from the -listen default %s", public, def[1])
	}
	var exposed []string
	for _, e := range all(final, "EXPOSE") {
		for _, p := range strings.Fields(e) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	slices.Sort(exposed)
	want := []string{port(t, public), port(t, admin)}
	slices.Sort(want)
	if !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want the public and admin ports %v", exposed, want)
	}

	hc := all(final, "HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("%d HEALTHCHECKs, want 1", len(hc))
	}
	_, cmd, ok := strings.Cut(hc[0], "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(cmd), &argv) != nil {
		t.Fatalf("HEALTHCHECK %q: want CMD in exec (JSON) form", hc[0])
	}
	if len(argv) != 3 || argv[1] != "-healthcheck" {
		t.Fatalf("HEALTHCHECK runs %q, want the binary's -healthcheck URL", argv)
	}
	u, err := url.Parse(argv[2])
	if err != nil || u.Path != "/healthz" || u.Port() != port(t, admin) || !net.ParseIP(u.Hostname()).IsLoopback() {
		t.Errorf("HEALTHCHECK URL %q: want loopback, the admin port %s and /healthz", argv[2], port(t, admin))
	}
	ep := all(final, "ENTRYPOINT")
	if len(ep) != 1 || json.Unmarshal([]byte(ep[0]), &argv) != nil || argv[0] != strings.Fields(strings.TrimPrefix(all(final, "COPY")[0], "--from=build "))[1] {
		t.Errorf("ENTRYPOINT %q: want the copied binary, in exec form", ep)
	}
}
