package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/relaynode"
)

// helpFlags returns the name of every flag -h lists.
func helpFlags(t *testing.T) []string {
	t.Helper()
	var out bytes.Buffer
	if err := run([]string{"-h"}, io.Discard, &out, nil); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		names = append(names, m[1])
	}
	if len(names) < 40 {
		t.Fatalf("-h lists %d flags, fewer than the binary has:\n%s", len(names), out.String())
	}
	return names
}

// TestDocsNameEveryFlag checks that every flag -h lists is named, as
// `-name` (alone or with its argument), in OPERATIONS.md or
// DOCUMENTATION.md.
func TestDocsNameEveryFlag(t *testing.T) {
	docs := strings.Join(readDoc(t, "OPERATIONS.md"), "\n") + strings.Join(readDoc(t, "DOCUMENTATION.md"), "\n")
	for _, name := range helpFlags(t) {
		if !regexp.MustCompile("`-" + regexp.QuoteMeta(name) + "[` ]").MatchString(docs) {
			t.Errorf("-%s: named in neither docs/OPERATIONS.md nor docs/DOCUMENTATION.md", name)
		}
	}
}

// wireRoutes parses package wire's sources and returns each constant whose
// name starts with Path, with its value: every route the protocol has.
func wireRoutes(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../../../wire/*.go")
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, "Path") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("wire.%s is not a string literal", id.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					routes[id.Name] = v
				}
			}
		}
	}
	if len(routes) < 4 {
		t.Fatalf("found %d wire.Path* constants (%v), want at least listen, dial, accept and park", len(routes), routes)
	}
	return routes
}

// TestProtocolDocumentsEveryRoute checks that docs/PROTOCOL.md documents
// each route of package wire (every wire.Path* constant) in its route
// table, as "POST <path>{arg}".
func TestProtocolDocumentsEveryRoute(t *testing.T) {
	proto := strings.Join(readDoc(t, "PROTOCOL.md"), "\n")
	for name, path := range wireRoutes(t) {
		if !regexp.MustCompile("`POST " + regexp.QuoteMeta(path) + `\{\w+\}` + "`").MatchString(proto) {
			t.Errorf("wire.%s (%s): docs/PROTOCOL.md has no `POST %s{...}`", name, path, path)
		}
	}
}

// TestNoFlagListTrue checks DOCUMENTATION.md's sentence on the Config
// fields that have no flag: each one it lists is named by no flag row, and
// every other Config field is named by a flag row (`Config.X`) or is one
// the sentence says comes from other flags.
func TestNoFlagListTrue(t *testing.T) {
	doc := strings.Join(readDoc(t, "DOCUMENTATION.md"), "\n")
	m := regexp.MustCompile("Only ((?:`\\w+`,? (?:and )?)+)have no\\s+flag").FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("DOCUMENTATION.md lacks the \"Only ... have no flag\" sentence")
	}
	noFlag := map[string]bool{}
	for _, f := range regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(m[1], -1) {
		noFlag[f[1]] = true
	}
	// Fields the binary sets from flags of another shape.
	derived := map[string]bool{"Logger": true, "Mailboxes": true, "Version": true}
	named := map[string]bool{}
	flagRow := regexp.MustCompile("(?m)^\\| `-[a-z0-9-]+.*$")
	for _, row := range flagRow.FindAllString(doc, -1) {
		for _, f := range regexp.MustCompile("`Config\\.(\\w+)`").FindAllStringSubmatch(row, -1) {
			named[f[1]] = true
		}
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[relaynode.Config]()) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		switch {
		case noFlag[f.Name] && named[f.Name]:
			t.Errorf("Config.%s: listed as having no flag, but a flag row names it", f.Name)
		case !noFlag[f.Name] && !named[f.Name] && !derived[f.Name]:
			t.Errorf("Config.%s: no flag row names it, and the no-flag list does not list it", f.Name)
		}
		delete(noFlag, f.Name)
	}
	for f := range noFlag {
		t.Errorf("the no-flag list names %s, which is not a Config field", f)
	}
}
