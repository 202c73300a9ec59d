package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of scripts/release.sh: the binaries CI builds for every change, and what an operator
// downloads. The image test (container_test.go) runs the amd64 one in a container.

// releasePlatforms are what release.sh builds by default.
var releasePlatforms = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// gitOut runs git in the checkout.
func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Skipf("not a git checkout (git %s: %v): release.sh stamps from git", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// runRelease runs the script into dir with extra environment.
func runRelease(t *testing.T, dir string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "scripts/release.sh", dir)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// envWithoutPinged is this process's environment less every PINGED_* variable, for a child
// that must see only the configuration given to it.
func envWithoutPinged(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PINGED_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func TestReleaseBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the release builds compile the whole program twice")
	}
	version := gitOut(t, "describe", "--tags", "--always", "--dirty")
	commit := gitOut(t, "rev-parse", "HEAD")
	date := time.Now() // the commit's date is before it
	dist := t.TempDir()
	runRelease(t, dist)

	// SHA256SUMS lists exactly the binaries, with their sums.
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(sums)))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		listed[name] = sum
	}
	for arch, machine := range releasePlatforms {
		name := "pingedchat-linux-" + arch
		path := filepath.Join(dist, name)
		if listed[name] != sha256File(t, path) {
			t.Errorf("%s: SHA256SUMS says %q, the file's sum is %s", name, listed[name], sha256File(t, path))
		}
		delete(listed, name)
		checkStaticELF(t, path, machine)
		checkReleaseBuildInfo(t, path, arch, version, commit)
	}
	if len(listed) != 0 {
		t.Errorf("SHA256SUMS lists more: %v", listed)
	}

	// The binary for this machine runs: -version shows the stamps, the web client is embedded,
	// and `check` exits non-zero when something needed is wrong.
	bin := filepath.Join(dist, "pingedchat-linux-"+runtime.GOARCH)
	if _, ok := releasePlatforms[runtime.GOARCH]; runtime.GOOS != "linux" || !ok {
		t.Skipf("no release binary runs on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("-version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "pingedchat "+version+", commit "+commit+" ") || !strings.Contains(v, runtime.Version()+" linux/"+runtime.GOARCH) {
		t.Fatalf("-version: %q, want version %s and commit %s", v, version, commit)
	}
	stamped, err := time.Parse(time.RFC3339, strings.TrimSuffix(strings.Fields(strings.SplitN(v, " commit "+commit+" ", 2)[1])[0], ","))
	if err != nil || stamped.After(date) || stamped.Before(date.Add(-10*365*24*time.Hour)) {
		t.Fatalf("-version's date in %q: %v", v, err)
	}
	serveEmbeddedWebClient(t, bin)
	checkExitStatus(t, bin)

	// Building the same commit again gives the same bytes.
	again := t.TempDir()
	runRelease(t, again, "PLATFORMS=linux/"+runtime.GOARCH)
	if a, b := sha256File(t, bin), sha256File(t, filepath.Join(again, "pingedchat-linux-"+runtime.GOARCH)); a != b {
		t.Errorf("two builds of the same tree differ: %s and %s", a, b)
	}
}

// checkStaticELF: the right machine, and no dynamic loader (CGO_ENABLED=0): it runs on any
// Linux of that architecture, and in a scratch image.
func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%v)", path, p.Type)
		}
	}
}

// checkReleaseBuildInfo reads how the binary was built.
func checkReleaseBuildInfo(t *testing.T, path, arch, version, commit string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": arch}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("%s: %s=%q, want %q", path, k, settings[k], v)
		}
	}
	// -trimpath leaves -ldflags out of the build information: the stamps are read from the
	// binary's data instead (and from -version where the binary runs).
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stamp := range []string{version, commit} {
		if !bytes.Contains(data, []byte(stamp)) {
			t.Errorf("%s: %q is not stamped in", path, stamp)
		}
	}
}

// serveEmbeddedWebClient starts the binary as a server, with nothing but flags, and fetches
// the web client: the files it serves are web/'s.
func serveEmbeddedWebClient(t *testing.T, bin string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	cmd := exec.Command(bin, "-addr", addr, "-postgres", testDatabase(t), "-data-dir", dir, "-files-dir", filepath.Join(dir, "files"))
	cmd.Env = envWithoutPinged()
	cmd.Dir = dir // no web/ here: only the embedded copy can serve
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the server's exit after SIGTERM: %v\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the server did not stop on SIGTERM\n%s", logs.String())
		}
	}()
	get := func(path string) (int, []byte, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	waitUntil(t, "the release binary to serve /healthz", func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the server exited: %v\n%s", err, logs.String())
		default:
		}
		code, _, err := get("/healthz")
		return err == nil && code == http.StatusOK
	})
	for _, name := range []string{"index.html", "style.css", "vendor/sockjs.min.js"} {
		want, err := os.ReadFile(filepath.Join("web", name))
		if err != nil {
			t.Fatal(err)
		}
		path := "/" + name
		if name == "index.html" {
			path = "/"
		}
		code, got, err := get(path)
		if err != nil || code != http.StatusOK || string(got) != string(want) {
			t.Errorf("GET %s: %d, %d bytes, %v; want web/%s (%d bytes)", path, code, len(got), err, name, len(want))
		}
	}
}

// checkExitStatus runs `pingedchat check` as a process: 0 when everything needed works, 1 when
// not, with the report on standard output.
func checkExitStatus(t *testing.T, bin string) {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"check"}, args...)...)
		cmd.Env = envWithoutPinged()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run("-postgres", testDatabase(t), "-files-dir", dir); code != 0 || !strings.Contains(out, "0 to fix") {
		t.Errorf("check of a good configuration: exit %d\n%s", code, out)
	}
	down := fmt.Sprintf("host=127.0.0.1 port=%d dbname=x connect_timeout=2", freePort(t))
	if code, out := run("-postgres", down, "-files-dir", dir); code != 1 || !strings.Contains(out, "FAIL  postgres") {
		t.Errorf("check with PostgreSQL down: exit %d\n%s", code, out)
	}
}
