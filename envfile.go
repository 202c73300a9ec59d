package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// Env files for the operator's commands. The service gets its PINGED_* variables from the env
// file through systemd (EnvironmentFile=) or from compose (env_file:); a command run by hand,
// such as `pingedchat check -env-file /etc/pingedchat/pingedchat.env`, reads the same file, so
// that it sees the configuration the service does.

// maxEnvFile bounds an env file: a few hundred settings, never megabytes.
const maxEnvFile = 1 << 20

// envFileArg takes "-env-file PATH" (or --env-file, or =PATH) off the front of args.
func envFileArg(args []string) (path string, rest []string, err error) {
	if len(args) == 0 {
		return "", args, nil
	}
	name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
	if !strings.HasPrefix(args[0], "-") || name != "env-file" {
		return "", args, nil
	}
	if hasValue {
		return value, args[1:], nil
	}
	if len(args) < 2 {
		return "", nil, fmt.Errorf("-env-file needs a file name")
	}
	return args[1], args[2:], nil
}

// loadEnvFile sets the variables of a systemd-style env file in this process's environment,
// over what it inherited, as systemd gives them to the service: NAME=VALUE per line, the value
// being the rest of the line with surrounding blanks (and one pair of quotes) removed; blank
// lines and lines starting with # or ; are comments. Flags still win over these variables.
func loadEnvFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading the env file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxEnvFile {
		return 0, fmt.Errorf("%s is larger than %d bytes: not an env file", path, maxEnvFile)
	}
	vars, err := parseEnvFile(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, kv := range vars {
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			return 0, fmt.Errorf("%s: setting %s: %w", path, kv[0], err)
		}
	}
	return len(vars), nil
}

// parseEnvFile reads NAME=VALUE lines; a line that is neither that nor a comment is an error
// naming its line, since a setting silently skipped is worse than none.
func parseEnvFile(data []byte) ([][2]string, error) {
	var vars [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxEnvFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(strings.TrimPrefix(name, "export "))
		if !ok || !validEnvName(name) {
			return nil, fmt.Errorf("line %d: not NAME=VALUE", n)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		vars = append(vars, [2]string{name, value})
	}
	return vars, sc.Err()
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
