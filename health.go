package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Health and version, for load balancers, systemd and operators.

// healthz answers while the process runs.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when PostgreSQL, the quick store and NATS are reachable and the server is
// not shutting down, else 503 naming what is down, so a load balancer sends sessions elsewhere.
// The body says only which dependency is unavailable: the errors themselves (host names,
// addresses, database and role names) go to the log, never to whoever asks.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	problems := s.readiness(r.Context())
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(problems, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// readiness is the status of each dependency that is not ready ("postgres: unavailable"); the
// reasons are logged.
func (s *Server) readiness(ctx context.Context) []string {
	if s.draining.Load() {
		return []string{"draining: shutting down"}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var problems []string
	down := func(what string, err error) {
		slog.Warn("not ready", "dependency", what, "err", err)
		problems = append(problems, what+": unavailable")
	}
	if err := s.db.pool.Ping(ctx); err != nil {
		down("postgres", err)
	}
	if _, err := s.db.quick.Get(ctx, Key{nsUsers, "health", "probe"}); err != nil && !isNotFound(err) {
		down("quick store", err)
	}
	if st := s.db.nc.Status(); st != nats.CONNECTED {
		down("nats", fmt.Errorf("connection %s", st))
	}
	return problems
}

// Release builds (scripts/release.sh, the Containerfile) stamp these with -ldflags -X: they build
// with -trimpath and, in a container, without .git, so the build information lacks them.
var (
	buildVersion string // e.g. v1.4.0, or what git describe says
	buildCommit  string // the full commit hash
	buildDate    string // RFC 3339, UTC
)

// versionString is what -version prints: the version, the commit it was built from, when, and
// the Go version — stamped by a release build, else from the binary's build information.
func versionString() string {
	version, commit, when, dirty := versionFromBuildInfo()
	if buildVersion != "" {
		version = buildVersion
	}
	if buildCommit != "" {
		commit, dirty = buildCommit, ""
	}
	if buildDate != "" {
		when = " " + buildDate
	}
	return fmt.Sprintf("pingedchat %s, commit %s%s%s, %s %s/%s", version, commit, dirty, when, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func versionFromBuildInfo() (version, commit, when, dirty string) {
	version, commit = "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				commit = st.Value
			case "vcs.time":
				when = " " + st.Value
			case "vcs.modified":
				if st.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	return version, commit, when, dirty
}
