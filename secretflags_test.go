package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretFlagsReadFiles: every secret flag has a -NAME-file and a PINGED_NAME_FILE variant;
// one trailing newline is dropped; the command line wins over the environment, and the value
// and its file at the same level are refused.
func TestSecretFlagsReadFiles(t *testing.T) {
	for _, name := range secretFlags {
		env := "PINGED_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		t.Setenv(env, "")
		os.Unsetenv(env)
		t.Setenv(env+"_FILE", "")
		os.Unsetenv(env + "_FILE")
	}
	smtp := writeSecret(t, "smtp://u:p%40ss@relay.example:587\n")
	cfg, err := parseFlags([]string{"-smtp-url-file", smtp, "-s3-secret-key-file", writeSecret(t, "k\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTPURL != "smtp://u:p%40ss@relay.example:587" || cfg.S3SecretKey != "k" {
		t.Fatalf("from files: %q %q", cfg.SMTPURL, cfg.S3SecretKey)
	}
	t.Setenv("PINGED_GIPHY_KEY_FILE", writeSecret(t, "giphy-secret\n\n"))
	t.Setenv("PINGED_METRICS_TOKEN", "FILL_ME") // the env file's placeholder is no value
	t.Setenv("PINGED_METRICS_TOKEN_FILE", writeSecret(t, "tok"))
	cfg, err = parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GiphyKey != "giphy-secret\n" || cfg.MetricsToken != "tok" {
		t.Fatalf("from PINGED_*_FILE: %q %q (one newline dropped, not more)", cfg.GiphyKey, cfg.MetricsToken)
	}
	if cfg, err = parseFlags([]string{"-giphy-key", "direct"}); err != nil || cfg.GiphyKey != "direct" {
		t.Fatalf("-giphy-key over PINGED_GIPHY_KEY_FILE: %q %v", cfg.GiphyKey, err)
	}
	t.Setenv("PINGED_MANDRILL_KEY", "from-env")
	if cfg, err = parseFlags([]string{"-mandrill-key-file", writeSecret(t, "from-file")}); err != nil || cfg.MandrillKey != "from-file" {
		t.Fatalf("-mandrill-key-file over PINGED_MANDRILL_KEY: %q %v", cfg.MandrillKey, err)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-smtp-url", "smtp://x", "-smtp-url-file", smtp}, nil, "both given"},
		{nil, map[string]string{"PINGED_INBOUND_TOKEN": "a", "PINGED_INBOUND_TOKEN_FILE": smtp}, "both set"},
		{[]string{"-postgres-file", filepath.Join(t.TempDir(), "missing")}, nil, "-postgres-file"},
		{[]string{"-nats-file", writeSecret(t, "\n")}, nil, "empty"},
		{[]string{"-vapid-private-key-file", writeSecret(t, strings.Repeat("x", maxSecretFile+1))}, nil, "larger"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want an error with %q", tc.args, tc.env, err, tc.want)
		}
		for k := range tc.env {
			os.Unsetenv(k)
		}
	}
}

// TestSecretFileIsNotInTheCommandLine starts the server as a process of its own with
// -metrics-token-file: the token works on /metrics, and neither /proc/PID/cmdline nor the
// profiler's /debug/pprof/cmdline shows it.
func TestSecretFileIsNotInTheCommandLine(t *testing.T) {
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("no /proc")
	}
	const token = "tok-5e3a91c2d7"
	tokenFile := writeSecret(t, token+"\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debugAddr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$", "--",
		"-addr", "127.0.0.1:0", "-debug-addr", debugAddr, "-metrics-token-file", tokenFile,
		"-postgres", testDatabase(t), "-files-dir", t.TempDir(), "-data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "PINGED_SERVER_PROCESS=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc, done := make(chan string, 1), make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done // its stderr ends with it
		_ = cmd.Wait()
	})
	go func() {
		defer close(done)
		re := regexp.MustCompile(`pingedchat listening"? addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log("server:", sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("the server process did not start")
	}

	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmdline), token) || !strings.Contains(string(cmdline), tokenFile) {
		t.Fatalf("/proc/PID/cmdline: %q", cmdline)
	}
	get := func(url, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("http://"+addr+"/metrics", "Bearer "+token); code != http.StatusOK {
		t.Fatalf("/metrics with the token from the file: %d", code)
	}
	if code, _ := get("http://"+addr+"/metrics", "Bearer "+tokenFile); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with the file's name as the token: %d", code)
	}
	var code int
	var body string
	waitUntil(t, "the debug server", func() bool {
		resp, err := http.Get("http://" + debugAddr + "/debug/pprof/cmdline")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return true
	})
	if code != http.StatusOK || strings.Contains(body, token) || !strings.Contains(body, "-metrics-token-file") {
		t.Fatalf("/debug/pprof/cmdline: %d %q", code, body)
	}
}

// TestServerProcess is the server process of TestSecretFileIsNotInTheCommandLine: it runs the
// server with the arguments after "--" until it is told to stop.
func TestServerProcess(t *testing.T) {
	if os.Getenv("PINGED_SERVER_PROCESS") != "1" {
		t.Skip("run by TestSecretFileIsNotInTheCommandLine")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	setupLogging("info")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}
