// Command ffjsongen runs the ffjson generator on struct files of package main.
//
// ffjson refuses a program ("is a program, not an importable package"), so each file is copied
// into a temporary package inside the module (ffjson asks `go list` for its import path), the
// generator runs there, and its output is rewritten to package main with every mention of the
// temporary package removed, so that two runs give identical files.
//
// Usage, from the module root (as `go generate` does):
//
//	go run ./internal/ffjsongen [-out DIR] structs.go …
//
// -out writes the generated files into DIR instead of beside their sources (the staleness test
// uses it).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

const tmpPkg = "ffjsongentmp"

func main() {
	out := flag.String("out", ".", "directory to write the generated files into")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: ffjsongen [-out DIR] file.go [file.go …]")
		os.Exit(2)
	}
	for _, f := range flag.Args() {
		if err := generate(f, *out); err != nil {
			fmt.Fprintf(os.Stderr, "ffjsongen %s: %v\n", f, err)
			os.Exit(1)
		}
	}
}

var pkgClause = regexp.MustCompile(`(?m)^package \w+`)

func generate(src, outDir string) error {
	// A directory per process, so that a concurrent run (the staleness test) cannot interfere.
	dir := filepath.Join("internal", "ffjsongen", fmt.Sprintf("%s%d", tmpPkg, os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	code, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	base := filepath.Base(src)
	tmpSrc := filepath.Join(dir, base)
	code = pkgClause.ReplaceAll(code, []byte("package "+tmpPkg))
	if err := os.WriteFile(tmpSrc, code, 0o644); err != nil {
		return err
	}
	cmd := exec.Command("go", "tool", "ffjson", "-force-regenerate", tmpSrc)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running ffjson: %w", err)
	}
	outName := strings.TrimSuffix(base, ".go") + "_ffjson.go"
	out, err := os.ReadFile(filepath.Join(dir, outName))
	if err != nil {
		return err
	}
	out = pkgClause.ReplaceAll(out, []byte("package main"))
	out = bytes.ReplaceAll(out, []byte(filepath.ToSlash(dir)+"/"), nil)
	out = bytes.ReplaceAll(out, []byte(filepath.Base(dir)), []byte("main"))
	return os.WriteFile(filepath.Join(outDir, outName), out, 0o644)
}
