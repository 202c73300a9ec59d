#!/usr/bin/env bash
# Release builds of pingedchat: static binaries (CGO_ENABLED=0, -trimpath) for linux/amd64 and
# linux/arm64, the web client embedded (web/ is compiled in with go:embed; -web-dir is only for
# development), the version, commit and date stamped (`pingedchat -version` prints them), and
# SHA256SUMS beside them. Nothing is uploaded.
#
#   scripts/release.sh [OUTDIR]          # default: dist/
#
# The version is `git describe --tags --always --dirty`, the commit `git rev-parse HEAD`, the
# date the commit's (UTC), so building the same commit again gives the same stamps. VERSION,
# COMMIT and DATE override them (the Containerfile passes them in: its build has no .git).
# PLATFORMS="linux/amd64 linux/arm64" is the default list.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-dist}
platforms=${PLATFORMS:-linux/amd64 linux/arm64}
have_git() { git rev-parse --git-dir >/dev/null 2>&1; }
if have_git; then
  version=${VERSION:-$(git describe --tags --always --dirty)}
  commit=${COMMIT:-$(git rev-parse HEAD)}
  date=${DATE:-$(TZ=UTC0 git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)}
else
  version=${VERSION:-devel}
  commit=${COMMIT:-unknown}
  date=${DATE:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
fi
for v in "$version" "$commit" "$date"; do
  # They go into -ldflags: no spaces or quotes.
  case "$v" in *[[:space:]\'\"]*|"") echo "release: bad stamp '$v'" >&2; exit 2 ;; esac
done
if [ ! -f web/index.html ]; then
  echo "release: web/index.html is missing: the web client would not be embedded" >&2
  exit 2
fi

mkdir -p "$out"
ldflags="-s -w -X main.buildVersion=$version -X main.buildCommit=$commit -X main.buildDate=$date"
names=()
for p in $platforms; do
  os=${p%/*} arch=${p#*/}
  name="pingedchat-$os-$arch"
  echo "release: building $name ($version, $commit, $date)" >&2
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOFLAGS=-mod=readonly \
    go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/$name" .
  names+=("$name")
done
(cd "$out" && sha256sum "${names[@]}" > SHA256SUMS)
echo "release: wrote ${names[*]} and SHA256SUMS to $out" >&2
