package relaynode_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsStandAlone checks that no document, source file or output
// string of the project cites a file outside the repository: a clone
// must be read on its own.
func TestDocsStandAlone(t *testing.T) {
	root := filepath.Join("..")
	banned := []string{"DESIGN" + ".md", "../" + "shared/", "STYLE" + ".md"}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "certs", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sh", ".txt", "":
		default:
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > 1<<20 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for _, s := range banned {
			if strings.Contains(string(b), s) {
				t.Errorf("%s cites %q, outside the repository", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d files; the walk missed the tree", checked)
	}
}
