package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Tests of the container image (Containerfile) and deploy/compose.yaml.
//
// TestContainerImage builds the image with podman and runs it against this host's PostgreSQL.
// No registry is reachable here, so the build stage's base image (golang) cannot be pulled: the
// test runs that stage's two commands — scripts/release.sh and scripts/container-rootfs.sh — on
// the host and hands their output to `podman build --build-context build=DIR`, which then builds
// the Containerfile's final stage as written (FROM scratch, COPY, USER, VOLUME, HEALTHCHECK,
// ENTRYPOINT). What is not run here: the build stage's FROM golang and `go mod download`, and
// compose.yaml's postgres, nats and aerospike services, whose images cannot be pulled either;
// TestComposeFile checks that file's structure and that its settings are a configuration the
// server accepts.

// podmanCmd runs podman with the global flags this host needs.
type podmanCmd struct {
	t      *testing.T
	global []string
}

// newPodman finds podman, or skips with the reason. Two things of this sandbox are worked
// around, both harmless elsewhere: crun 1.8 refuses hosts with cgroups v1 and v2 mounted
// together ("cgroups in hybrid mode not supported"), so runc is used when installed; and
// podman's default rlimits for root containers (nofile 1048576, nproc 4194304) need
// CAP_SYS_RESOURCE, which the sandbox does not grant, so the test asks for modest ones.
func newPodman(t *testing.T) *podmanCmd {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed (add_deps.sh installs it on Debian and Ubuntu): the image was not built or run")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the test runs rootful podman with the host's network (rootless podman would need subuids set up)")
	}
	p := &podmanCmd{t: t}
	if _, err := exec.LookPath("runc"); err == nil {
		p.global = []string{"--runtime", "runc"}
	}
	if out, err := p.run("info"); err != nil {
		t.Skipf("podman does not work here: %v\n%s", err, out)
	}
	return p
}

func (p *podmanCmd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(slices.Clone(p.global), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (p *podmanCmd) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// stdout runs podman and returns only its standard output (JSON answers).
func (p *podmanCmd) stdout(args ...string) []byte {
	p.t.Helper()
	cmd := exec.Command("podman", append(slices.Clone(p.global), args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

type imageConfig struct {
	User         string
	Env          []string
	Entrypoint   []string
	WorkingDir   string
	Volumes      map[string]any
	ExposedPorts map[string]any
	StopSignal   string
}

func TestContainerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the program and an image")
	}
	p := newPodman(t)
	version := gitOut(t, "describe", "--tags", "--always", "--dirty")

	// The build stage's commands, on the host.
	dist, buildCtx := t.TempDir(), t.TempDir()
	runRelease(t, dist, "PLATFORMS=linux/"+runtime.GOARCH)
	if out, err := exec.Command("scripts/container-rootfs.sh", filepath.Join(dist, "pingedchat-linux-"+runtime.GOARCH),
		filepath.Join(buildCtx, "out")).CombinedOutput(); err != nil {
		t.Fatalf("container-rootfs.sh: %v\n%s", err, out)
	}
	tag := fmt.Sprintf("localhost/pingedchat-test:%d", os.Getpid())
	// --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
	p.must("build", "--format", "docker", "--pull=never", "--build-context", "build="+buildCtx,
		"-f", "Containerfile", "-t", tag, t.TempDir())
	t.Cleanup(func() { _, _ = p.run("rmi", "-f", tag) })

	var images []struct {
		Config      imageConfig
		Healthcheck *struct{ Test []string } // podman reports it beside Config
	}
	if err := json.Unmarshal(p.stdout("image", "inspect", tag), &images); err != nil || len(images) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	ic := images[0].Config
	if ic.User != "65532:65532" || !slices.Equal(ic.Entrypoint, []string{"/pingedchat"}) || ic.WorkingDir != "/data" {
		t.Errorf("image: user %q, entrypoint %v, workdir %q", ic.User, ic.Entrypoint, ic.WorkingDir)
	}
	if _, ok := ic.Volumes["/data"]; !ok {
		t.Errorf("image volumes %v, want /data", ic.Volumes)
	}
	if hc := images[0].Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/pingedchat", "healthcheck"}) {
		t.Errorf("image healthcheck %+v", hc)
	}
	for _, want := range []string{"PINGED_DATA_DIR=/data", "PINGED_FILES_DIR=/data/files", "PINGED_ADDR=:8080"} {
		if !slices.Contains(ic.Env, want) {
			t.Errorf("image env %v lacks %s", ic.Env, want)
		}
	}

	// Run it on the host's network against the host's PostgreSQL. The server runs as 65532,
	// which PostgreSQL's peer authentication does not know: it connects over TCP to a proxy
	// that forwards to the socket as this test's user (database_test.go).
	proxy := startPGProxy(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	name := fmt.Sprintf("pingedchat-test-%d", os.Getpid())
	postgres := fmt.Sprintf("host=127.0.0.1 port=%d user=%s %s connect_timeout=5", proxy.port(), me.Username, testDatabase(t))
	p.must("run", "-d", "--name", name, "--network", "host", "--pull=never",
		"--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096",
		"-e", "PINGED_ADDR="+addr, "-e", "PINGED_POSTGRES="+postgres, tag)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run("logs", name)
			t.Logf("the container's log:\n%s", out)
		}
		_, _ = p.run("rm", "-f", "-v", name)
	})

	get := func(path string) (int, []byte, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	waitUntil(t, "the container to serve /readyz", func() bool {
		code, _, err := get("/readyz")
		return err == nil && code == http.StatusOK
	})
	index, _ := os.ReadFile("web/index.html")
	if code, body, err := get("/"); err != nil || code != http.StatusOK || !bytes.Equal(body, index) {
		t.Errorf("GET /: %d, %v; want web/index.html", code, err)
	}

	// The image's HEALTHCHECK, run by podman inside the container.
	p.must("healthcheck", "run", name)
	if out := p.must("exec", name, "/pingedchat", "-version"); !strings.Contains(out, "pingedchat "+version+", commit ") {
		t.Errorf("-version in the container: %q, want version %s", out, version)
	}
	// The same configuration passes `check` in the container: PostgreSQL, NATS, and /data
	// writable by the unprivileged user.
	out := p.must("exec", name, "/pingedchat", "check")
	if !regexp.MustCompile(`ok\s+files\s+-files-dir /data/files`).MatchString(out) || !strings.Contains(out, "0 to fix") {
		t.Errorf("check in the container:\n%s", out)
	}
	if top := p.must("top", name, "user", "huser"); !strings.Contains(top, "65532") {
		t.Errorf("the server does not run as 65532:\n%s", top)
	}

	// People chat through it.
	srv := &testServer{addr: addr}
	alice, bob := register(t, srv, "ctra"), register(t, srv, "ctrb")
	cid := newConvo(t, alice, "in a container", bob)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "hello from the image"})
	bob.waitPush("the message", func(m map[string]any) bool { return m["content"] == "hello from the image" })

	// SIGTERM (podman stop) shuts it down gracefully: exit status 0.
	p.must("stop", "-t", "20", name)
	if code := strings.TrimSpace(string(p.stdout("inspect", "--format", "{{.State.ExitCode}}", name))); code != "0" {
		t.Errorf("exit status after podman stop: %s", code)
	}
}

// composeFile is the part of compose.yaml the test reads.
type composeFile struct {
	Services map[string]struct {
		Image       string
		Build       *struct{ Context, Dockerfile string }
		Profiles    []string
		DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
		EnvFile     string                                `yaml:"env_file"`
		Environment map[string]string
		Secrets     []string
		Ports       []string
		Volumes     []string
		Healthcheck *struct{ Test []string }
	}
	Secrets map[string]struct{ File string }
	Volumes map[string]any
}

// deploy/compose.yaml: the services, and settings the server accepts.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	pc, ok := cf.Services["pingedchat"]
	if !ok {
		t.Fatal("no pingedchat service")
	}
	for _, s := range []string{"postgres", "nats"} {
		if _, ok := cf.Services[s]; !ok || len(cf.Services[s].Profiles) != 0 {
			t.Errorf("service %s missing or behind a profile", s)
		}
		if _, ok := pc.DependsOn[s]; !ok {
			t.Errorf("pingedchat does not depend on %s", s)
		}
	}
	if as, ok := cf.Services["aerospike"]; !ok || !slices.Equal(as.Profiles, []string{"aerospike"}) {
		t.Errorf("no aerospike service behind the aerospike profile")
	} else if !slices.Contains(as.Volumes, "../aerospike.conf:/opt/aerospike/etc/aerospike.conf:ro") {
		t.Errorf("aerospike does not get the project's aerospike.conf: %v", as.Volumes)
	}
	if pc.DependsOn["postgres"].Condition != "service_healthy" || cf.Services["postgres"].Healthcheck == nil {
		t.Error("pingedchat should wait for a healthy PostgreSQL")
	}
	if pc.Build == nil || pc.Build.Dockerfile != "Containerfile" {
		t.Fatalf("pingedchat build: %+v", pc.Build)
	}
	if _, err := os.Stat(filepath.Join("deploy", pc.Build.Context, pc.Build.Dockerfile)); err != nil {
		t.Errorf("the build context and Containerfile: %v", err)
	}
	if !slices.ContainsFunc(pc.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		t.Errorf("pingedchat volumes %v: nothing on /data (the image's VOLUME)", pc.Volumes)
	}
	for _, s := range pc.Secrets {
		if _, ok := cf.Secrets[s]; !ok {
			t.Errorf("secret %s not defined", s)
		}
	}

	// The container's configuration: compose.env, the service's environment and the image's
	// ENV, as the server reads them, with the secret file standing in for the real one.
	vars := map[string]string{}
	for _, kv := range containerfileEnv(t) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	envFile, err := os.ReadFile(filepath.Join("deploy", pc.EnvFile))
	if err != nil {
		t.Fatal(err)
	}
	fileVars, err := parseEnvFile(envFile)
	if err != nil {
		t.Fatalf("%s: %v", pc.EnvFile, err)
	}
	for _, kv := range fileVars {
		vars[kv[0]] = kv[1]
	}
	for k, v := range pc.Environment {
		vars[k] = v
	}
	secret := filepath.Join(t.TempDir(), "postgres_url")
	_ = os.WriteFile(secret, []byte("postgres://pingedchat:pw@postgres:5432/pingedchat?sslmode=disable\n"), 0o600)
	if vars["PINGED_POSTGRES_FILE"] != "/run/secrets/postgres_url" || !slices.Contains(pc.Secrets, "postgres_url") {
		t.Errorf("PINGED_POSTGRES_FILE %q, secrets %v", vars["PINGED_POSTGRES_FILE"], pc.Secrets)
	}
	vars["PINGED_POSTGRES_FILE"] = secret
	known := map[string]bool{}
	for _, f := range deployFlagNames(t) {
		known[deployEnvVarName(f)] = true
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PINGED_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range vars {
		if !strings.HasPrefix(k, "PINGED_") {
			continue
		}
		if !known[k] {
			t.Errorf("%s names no flag", k)
		}
		t.Setenv(k, v)
	}
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatalf("the compose configuration: %v", err)
	}
	if cfg.Postgres != "postgres://pingedchat:pw@postgres:5432/pingedchat?sslmode=disable" || cfg.NATS != "nats://nats:4222" ||
		cfg.FilesDir != "/data/files" || cfg.DataDir != "/data" {
		t.Errorf("compose configuration: postgres %q, nats %q, files %q, data %q", cfg.Postgres, cfg.NATS, cfg.FilesDir, cfg.DataDir)
	}
}

// containerfileEnv is what the Containerfile's final stage sets with ENV.
func containerfileEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	final := text[strings.LastIndex(text, "\nFROM "):]
	if !strings.HasPrefix(final, "\nFROM scratch") {
		t.Fatalf("the final stage is not FROM scratch")
	}
	var env []string
	for _, line := range strings.Split(final, "\n") {
		if rest, ok := strings.CutPrefix(line, "ENV "); ok {
			env = append(env, strings.Fields(rest)...)
		}
	}
	return env
}
