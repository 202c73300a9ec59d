package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Handing -postgres to pg_dump and pg_restore without the command line. Their arguments are
// in every local user's process list, and -postgres may hold a password, so the connection
// string is taken apart into libpq's keywords and written to a connection service file (mode
// 0600, in a private temporary directory, removed when the tool ends) that the tool finds
// through PGSERVICEFILE and PGSERVICE: nothing of it is in their arguments.

const backupService = "pingedchat"

// parseConninfo takes a libpq connection string apart: "key=value key='quoted value'" or a
// postgres:// / postgresql:// URI (libpq's syntax, both).
func parseConninfo(s string) (map[string]string, error) {
	if rest, ok := strings.CutPrefix(s, "postgresql://"); ok {
		return parseConninfoURI(rest)
	}
	if rest, ok := strings.CutPrefix(s, "postgres://"); ok {
		return parseConninfoURI(rest)
	}
	return parseConninfoKeywords(s)
}

// parseConninfoKeywords reads key = value pairs; a value is a word or single-quoted, and a
// backslash takes the next character as it is.
func parseConninfoKeywords(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	skip := func() {
		for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && strings.IndexByte(" \t\n\r\f\v", s[i]) < 0 {
			i++
		}
		key := s[start:i]
		skip()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("the connection string is not key=value pairs (near %q)", truncate(s[start:], 20))
		}
		i++
		skip()
		var v strings.Builder
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		closed := !quoted
		for i < len(s) {
			c := s[i]
			if !quoted && strings.IndexByte(" \t\n\r\f\v", c) >= 0 {
				break
			}
			if quoted && c == '\'' {
				i++
				closed = true
				break
			}
			if c == '\\' && i+1 < len(s) {
				i++
				c = s[i]
			}
			v.WriteByte(c)
			i++
		}
		if !closed {
			return nil, fmt.Errorf("the connection string has an unterminated quote after %s=", key)
		}
		out[key] = v.String()
	}
}

// parseConninfoURI reads [user[:password]@][host[:port]][,...][/dbname][?key=value&...] (the
// part after the scheme), percent-decoding each part.
func parseConninfoURI(s string) (map[string]string, error) {
	out := map[string]string{}
	rest, query, _ := strings.Cut(s, "?")
	authority, db, hasDB := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, pass, hasPass := strings.Cut(authority[:at], ":")
		if err := setUnescaped(out, "user", user); err != nil {
			return nil, err
		}
		if hasPass {
			if err := setUnescaped(out, "password", pass); err != nil {
				return nil, err
			}
		}
		authority = authority[at+1:]
	}
	if authority != "" {
		var hosts, ports []string
		for _, hp := range strings.Split(authority, ",") {
			host, port := hp, ""
			if strings.HasPrefix(hp, "[") { // [IPv6]:port
				end := strings.IndexByte(hp, ']')
				if end < 0 {
					return nil, fmt.Errorf("the connection URI has an unterminated [ in its host")
				}
				host, port = hp[1:end], strings.TrimPrefix(hp[end+1:], ":")
			} else if h, p, ok := strings.Cut(hp, ":"); ok {
				host, port = h, p
			}
			h, err := url.PathUnescape(host)
			if err != nil {
				return nil, fmt.Errorf("the connection URI's host: %w", err)
			}
			hosts, ports = append(hosts, h), append(ports, port)
		}
		out["host"] = strings.Join(hosts, ",")
		if strings.Join(ports, "") != "" {
			out["port"] = strings.Join(ports, ",")
		}
	}
	if hasDB && db != "" {
		if err := setUnescaped(out, "dbname", db); err != nil {
			return nil, err
		}
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("the connection URI's parameter %q is not key=value", truncate(kv, 20))
			}
			if err := setUnescaped(out, k, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func setUnescaped(m map[string]string, key, v string) error {
	u, err := url.PathUnescape(v)
	if err != nil {
		return fmt.Errorf("the connection URI's %s: %w", key, err)
	}
	m[key] = u
	return nil
}

// serviceFileEnv writes conninfo as a connection service file in a new private directory and
// returns the environment that points libpq tools at it, and a function that removes it.
func serviceFileEnv(conninfo string) (env []string, cleanup func(), err error) {
	kv, err := parseConninfo(conninfo)
	if err != nil {
		return nil, nil, fmt.Errorf("-postgres: %w", err)
	}
	if _, ok := kv["service"]; ok {
		return nil, nil, fmt.Errorf("-postgres names a service: set PGSERVICE in the environment instead, or spell the connection out")
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("[" + backupService + "]\n")
	for _, k := range keys {
		if strings.ContainsAny(k+kv[k], "\r\n") || strings.ContainsAny(k, "=[]#") {
			return nil, nil, fmt.Errorf("-postgres: the value of %q cannot be handed to pg_dump", k)
		}
		b.WriteString(k + "=" + kv[k] + "\n")
	}
	dir, err := os.MkdirTemp("", "pingedchat-pg-") // mode 0700
	if err != nil {
		return nil, nil, fmt.Errorf("writing the connection for pg_dump: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	path := filepath.Join(dir, "pg_service.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("writing the connection for pg_dump: %w", err)
	}
	return []string{"PGSERVICEFILE=" + path, "PGSERVICE=" + backupService}, cleanup, nil
}
