package main

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests of the systemd deployment files in deploy/.

const (
	deployEnvPath  = "deploy/pingedchat.env"
	deployUnitPath = "deploy/pingedchat.service"
	deployBinary   = "/usr/local/bin/pingedchat"
)

// deployNonDefaults are the Config fields the env file deliberately sets to something other
// than the flag's default; every other setting in the file must equal its default.
var deployNonDefaults = map[string]bool{
	"Postgres":     true, // the local server's Unix socket
	"SMTPURL":      true, // FILL_ME
	"MandrillKey":  true, // FILL_ME
	"InboundToken": true, // FILL_ME
	"FilesDir":     true, // under the unit's StateDirectory
	"S3SecretKey":  true, // FILL_ME
	"MetricsToken": true, // FILL_ME
	"DataDir":      true, // the unit's StateDirectory
}

// deployFlagNames returns the name of every flag parseFlags defines, read from main.go's
// source: the name argument of each fset.XxxVar(&cfg.Field, "name", ...) call (and of
// fset.Xxx("name", ...), should one appear).
func deployFlagNames(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	nameFirst := map[string]bool{"Bool": true, "BoolFunc": true, "Duration": true, "Float64": true,
		"Func": true, "Int": true, "Int64": true, "String": true, "Uint": true, "Uint64": true}
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if d, ok := d.(*ast.FuncDecl); ok && d.Recv == nil && d.Name.Name == "parseFlags" {
			fn = d
		}
	}
	if fn == nil {
		t.Fatal("main.go: no func parseFlags")
	}
	var names []string
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if recv, ok := sel.X.(*ast.Ident); !ok || recv.Name != "fset" {
			return true
		}
		idx := -1
		switch m := sel.Sel.Name; {
		case strings.HasSuffix(m, "Var"): // StringVar, DurationVar, ..., TextVar, Var
			idx = 1
		case nameFirst[m]:
			idx = 0
		default: // Parse, Visit, VisitAll, Output, PrintDefaults, ...
			return true
		}
		if len(call.Args) <= idx {
			t.Errorf("%s: fset.%s with too few arguments", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		}
		lit, ok := call.Args[idx].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: fset.%s: flag name is not a string literal", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		}
		name, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		return true
	})
	if len(names) == 0 {
		t.Fatal("main.go: parseFlags defines no flags (fset.XxxVar calls)")
	}
	for _, s := range secretFlags { // addSecretFileFlags (secretflags.go)
		names = append(names, s+"-file")
	}
	return names
}

// deployEnvVarName is the variable parseFlags reads for a flag.
func deployEnvVarName(flag string) string {
	return "PINGED_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

type deployEnvLine struct {
	line        int
	name, value string
}

var deployEnvKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readDeployEnv parses deploy/pingedchat.env as systemd's EnvironmentFile= would: blank lines
// and lines starting with # or ; are comments, every other line is NAME=VALUE with the value
// being the rest of the line, surrounding white space stripped. Quotes, backslashes and
// trailing comments, which systemd would interpret, are rejected to keep the file literal.
func readDeployEnv(t *testing.T) []deployEnvLine {
	t.Helper()
	data, err := os.ReadFile(deployEnvPath)
	if err != nil {
		t.Fatal(err)
	}
	var vars []deployEnvLine
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		name, value, ok := strings.Cut(l, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !deployEnvKey.MatchString(name) {
			t.Errorf("%s:%d: not NAME=VALUE: %q", deployEnvPath, i+1, l)
			continue
		}
		if strings.ContainsAny(value, `"'\`) || strings.Contains(value, " #") {
			t.Errorf("%s:%d: %s: quotes, backslashes or a trailing comment in the value: %q", deployEnvPath, i+1, name, value)
		}
		vars = append(vars, deployEnvLine{i + 1, name, value})
	}
	return vars
}

func TestEnvFileListsEveryFlag(t *testing.T) {
	// -version is an action, not a setting: it has no environment variable.
	flags := slices.DeleteFunc(deployFlagNames(t), func(f string) bool { return f == "version" })
	known := map[string]string{} // variable -> flag
	for _, f := range flags {
		known[deployEnvVarName(f)] = f
	}
	vars := readDeployEnv(t)

	seen := map[string]int{}
	for _, v := range vars {
		if !strings.HasPrefix(v.name, "PINGED_") {
			continue // e.g. GOMEMLIMIT: not ours to check
		}
		seen[v.name]++
		if _, ok := known[v.name]; !ok {
			t.Errorf("%s:%d: %s names no flag of the server", deployEnvPath, v.line, v.name)
		}
		if seen[v.name] == 2 {
			t.Errorf("%s:%d: %s set more than once", deployEnvPath, v.line, v.name)
		}
		// A secret's _FILE variant names a file, not the secret (secretflags.go).
		if up := strings.ToUpper(v.name); (strings.Contains(up, "PASSWORD") || strings.Contains(up, "TOKEN")) && v.value != "FILL_ME" && !strings.HasSuffix(up, "_FILE") {
			t.Errorf("%s:%d: secret %s=%q, want FILL_ME", deployEnvPath, v.line, v.name, v.value)
		}
	}
	for _, f := range flags {
		if seen[deployEnvVarName(f)] == 0 {
			t.Errorf("%s: flag -%s missing (want a line %s=...)", deployEnvPath, f, deployEnvVarName(f))
		}
	}
	if t.Failed() {
		return
	}

	// The server must accept the file as it stands, and it must change nothing but the
	// deliberate production values (deployNonDefaults) from the flags' defaults.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PINGED_") {
			t.Setenv(k, "") // restores it after the test
			os.Unsetenv(k)
		}
	}
	defaults, err := parseFlags(nil)
	if err != nil {
		t.Fatalf("parseFlags without environment: %v", err)
	}
	for _, v := range vars {
		t.Setenv(v.name, v.value)
	}
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatalf("parseFlags with %s: %v", deployEnvPath, err)
	}
	got, want := reflect.ValueOf(cfg), reflect.ValueOf(defaults)
	for i := 0; i < got.NumField(); i++ {
		field := got.Type().Field(i)
		if !field.IsExported() {
			continue
		}
		same := reflect.DeepEqual(got.Field(i).Interface(), want.Field(i).Interface())
		if same && deployNonDefaults[field.Name] {
			t.Errorf("%s leaves Config.%s at its default %v; expected a production value", deployEnvPath, field.Name, got.Field(i))
		}
		if !same && !deployNonDefaults[field.Name] {
			t.Errorf("%s sets Config.%s to %v; its default is %v", deployEnvPath, field.Name, got.Field(i), want.Field(i))
		}
	}
}

// deployUnitDirectives must each appear as a line of the unit.
var deployUnitDirectives = []string{
	"Type=simple",
	"ExecStart=" + deployBinary,
	"User=pingedchat",
	"Group=pingedchat",
	"EnvironmentFile=/etc/pingedchat/pingedchat.env",
	"WorkingDirectory=/var/lib/pingedchat",
	"StateDirectory=pingedchat",
	"Restart=on-failure",
	"KillSignal=SIGTERM",
	"NoNewPrivileges=yes",
	"ProtectSystem=strict",
	"ReadWritePaths=/var/lib/pingedchat",
	"PrivateTmp=yes",
	"PrivateDevices=yes",
	"ProtectHome=yes",
	"ProtectKernelTunables=yes",
	"ProtectKernelModules=yes",
	"ProtectKernelLogs=yes",
	"ProtectControlGroups=yes",
	"ProtectClock=yes",
	"ProtectHostname=yes",
	"RestrictSUIDSGID=yes",
	"RestrictRealtime=yes",
	"RestrictNamespaces=yes",
	"LockPersonality=yes",
	"MemoryDenyWriteExecute=yes",
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
	"SystemCallArchitectures=native",
	"SystemCallFilter=@system-service",
	"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
	"AmbientCapabilities=CAP_NET_BIND_SERVICE",
	"LimitNOFILE=65536",
	"UMask=0077",
}

// deployOtherUnitFile matches a diagnostic systemd-analyze prints about a unit file on the
// host: "/lib/systemd/system/postgresql.service:12: Unknown key ...".
var deployOtherUnitFile = regexp.MustCompile(`^(/[^:]+):[0-9]+: `)

// deployVerify runs systemd-analyze verify on unit and returns the lines that are findings
// about it, and the command's error.
//
// Filtered (the only noise filter): lines of the form "<path>:<line>: ..." whose <path> is a
// unit file other than unit. verify loads the units ours names in After=/Wants= (postgresql.service,
// network-online.target) and their dependencies from the host, and prints its complaints
// about those files too (e.g. a distribution's unit using KillMode=none); they say nothing
// about ours and differ from host to host. On the Debian 12 container this test was written
// on (systemd 252), verify prints nothing at all for this unit, so nothing is filtered there;
// it needs no bus, does not check that User= exists, and does not open EnvironmentFile=.
// Everything else is a finding, including "pingedchat.service: ..." lines and diagnostics
// about unit's own file, such as "Unknown key" (which verify reports with exit status 0).
func deployVerify(t *testing.T, analyze, unit string) (findings []string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if m := deployOtherUnitFile.FindStringSubmatch(l); m != nil && m[1] != unit {
			t.Logf("ignored, about another unit file: %s", l)
			continue
		}
		findings = append(findings, l)
	}
	return findings, err
}

func TestServiceUnitVerifies(t *testing.T) {
	data, err := os.ReadFile(deployUnitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	lines := map[string]bool{}
	for _, l := range strings.Split(unit, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, d := range deployUnitDirectives {
		if !lines[d] {
			t.Errorf("%s: no line %q", deployUnitPath, d)
		}
	}
	// Wants=/After= network-online.target and postgresql.service.
	for _, key := range []string{"After=", "Wants="} {
		for _, dep := range []string{"network-online.target", "postgresql.service"} {
			if !regexp.MustCompile(`(?m)^` + key + `.*\b` + regexp.QuoteMeta(dep)).MatchString(unit) {
				t.Errorf("%s: %s does not name %s", deployUnitPath, key, dep)
			}
		}
	}
	// systemd kills the server after TimeoutStopSec; it must outlast the graceful shutdown.
	if m := regexp.MustCompile(`(?m)^TimeoutStopSec=([0-9]+)s?$`).FindStringSubmatch(unit); m == nil {
		t.Errorf("%s: no TimeoutStopSec=<seconds>", deployUnitPath)
	} else if n, _ := strconv.Atoi(m[1]); time.Duration(n)*time.Second <= defaultConfig().ShutdownTimeout {
		t.Errorf("%s: TimeoutStopSec=%ss is not above the %v graceful shutdown", deployUnitPath, m[1], defaultConfig().ShutdownTimeout)
	}
	if !regexp.MustCompile(`(?m)^RestartSec=`).MatchString(unit) {
		t.Errorf("%s: no RestartSec=", deployUnitPath)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not on PATH (%v); not verifying %s", err, deployUnitPath)
	}
	// verify checks that ExecStart's binary exists and is executable: point a copy of the
	// unit, otherwise identical, at a stub.
	dir := t.TempDir()
	stub := filepath.Join(dir, "pingedchat")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := "\nExecStart=" + deployBinary + "\n"
	if n := strings.Count(unit, old); n != 1 {
		t.Fatalf("%s: %d lines %q, want 1", deployUnitPath, n, strings.TrimSpace(old))
	}
	copyPath := filepath.Join(dir, "pingedchat.service")
	if err := os.WriteFile(copyPath, []byte(strings.Replace(unit, old, "\nExecStart="+stub+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	findings, err := deployVerify(t, analyze, copyPath)
	if err != nil || len(findings) > 0 {
		t.Errorf("systemd-analyze verify %s (a copy of %s with ExecStart=%s): %v\n%s",
			copyPath, deployUnitPath, stub, err, strings.Join(findings, "\n"))
	}

	// Make sure verify's complaints do reach us: a copy with an unknown key must be reported.
	canaryDir := filepath.Join(dir, "canary")
	if err := os.Mkdir(canaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(canaryDir, "pingedchat.service")
	if err := os.WriteFile(canary, []byte(strings.Replace(unit, old, "\nExecStart="+stub+"\nPingedchatCanaryKey=1\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	findings, err = deployVerify(t, analyze, canary)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("systemd-analyze verify %s: %v", canary, err)
	}
	if !strings.Contains(strings.Join(findings, "\n"), "PingedchatCanaryKey") {
		t.Errorf("systemd-analyze verify did not report an unknown key in %s (findings: %q); the check above proves nothing", canary, findings)
	}
}
