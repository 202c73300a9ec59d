package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesAreFresh regenerates the ffjson code into a temporary directory and fails
// when the committed file differs: run `go generate` and commit the result.
func TestGeneratedFilesAreFresh(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./internal/ffjsongen", "-out", out, "structs.go", "mailStructs.go")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running the generator: %v\n%s", err, b)
	}
	for _, name := range []string{"structs_ffjson.go", "mailStructs_ffjson.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s is stale: run go generate and commit it", name)
		}
	}
}
