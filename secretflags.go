package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Secrets from files. A flag's value is in the process's command line, which every local user
// reads in /proc/PID/cmdline (and the profiler serves at /debug/pprof/cmdline). So every flag that
// holds a secret has a -NAME-file variant (PINGED_NAME_FILE) naming a file to read it from, for
// container secrets and credential directories (systemd's LoadCredential=, Docker and Kubernetes
// secrets); the env file (mode 0600, read by systemd) serves as well.

// secretFlags are the flags whose values are secrets, or URLs that may carry a password.
var secretFlags = []string{
	"postgres", "nats", "smtp-url", "mandrill-key", "inbound-token", "metrics-token",
	"s3-access-key", "s3-secret-key", "vapid-private-key", "giphy-key",
}

// maxSecretFile bounds what a secret file may hold: a key or URL, never megabytes.
const maxSecretFile = 64 << 10

// addSecretFileFlags defines -NAME-file for every secret flag; the map goes from NAME to the
// file flag's value.
func addSecretFileFlags(fset *flag.FlagSet) map[string]*string {
	files := map[string]*string{}
	for _, name := range secretFlags {
		files[name] = fset.String(name+"-file", "", fmt.Sprintf("read -%s from this file (one trailing newline is dropped), so that it is not in the command line", name))
	}
	return files
}

// applySecretFiles sets each secret flag whose -NAME-file (or PINGED_NAME_FILE) is given from
// that file. The usual order holds: the command line wins over the environment, so -NAME wins
// over PINGED_NAME_FILE and -NAME-file over PINGED_NAME. Both at the same level (-NAME with
// -NAME-file, or PINGED_NAME other than empty or FILL_ME with PINGED_NAME_FILE) is an error:
// one of them would be silently ignored.
func applySecretFiles(fset *flag.FlagSet, files map[string]*string, given map[string]bool) error {
	for _, name := range secretFlags {
		path := strings.TrimSpace(*files[name])
		if notConfigured(path) {
			continue
		}
		env := "PINGED_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		fromCommandLine := given[name+"-file"]
		envValue, inEnv := os.LookupEnv(env)
		switch {
		case fromCommandLine && given[name]:
			return fmt.Errorf("-%s and -%s-file are both given: give one", name, name)
		case !fromCommandLine && given[name]:
			continue // the command line wins over PINGED_..._FILE
		case !fromCommandLine && inEnv && !notConfigured(envValue):
			return fmt.Errorf("%s and %s_FILE are both set: leave %s empty", env, env, env)
		}
		v, err := readSecretFile(path)
		if err != nil {
			return fmt.Errorf("-%s-file: %w", name, err)
		}
		if err := fset.Set(name, v); err != nil {
			return fmt.Errorf("-%s-file: %w", name, err)
		}
	}
	return nil
}

// readSecretFile reads a secret, dropping one trailing newline (what echo and editors add).
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", errors.New(path + " is empty")
	}
	return s, nil
}
