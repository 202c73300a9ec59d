#!/usr/bin/env bash
# Refreshes the web client's third-party browser builds in web/vendor/ from the npm registry.
# Idempotent: the versions are pinned below; running it again rewrites the same bytes.
# Needs npm (Node 20+). Bump a version here, run the script, and commit web/vendor/.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKJS_VERSION=1.6.1 # sockjs-client
LOKI_VERSION=1.5.12  # lokijs

dest=web/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fetch <package> <version>: unpacks the registry tarball into $tmp/<package>/package.
fetch() {
  local pkg=$1 ver=$2
  mkdir -p "$tmp/$pkg"
  (cd "$tmp/$pkg" && npm pack --silent "$pkg@$ver" >/dev/null)
  tar -xzf "$tmp/$pkg/$pkg-$ver.tgz" -C "$tmp/$pkg"
}

fetch sockjs-client "$SOCKJS_VERSION"
fetch lokijs "$LOKI_VERSION"

mkdir -p "$dest"
s="$tmp/sockjs-client/package"
l="$tmp/lokijs/package"
# The server names /vendor/sockjs.min.js as its SockJSURL, so this file name is fixed.
install -m 0644 "$s/dist/sockjs.min.js" "$dest/sockjs.min.js"
install -m 0644 "$s/LICENSE" "$dest/LICENSE.sockjs-client"
install -m 0644 "$l/build/lokijs.min.js" "$dest/lokijs.min.js"
# The IndexedDB adapter is small; the readable source build is vendored.
install -m 0644 "$l/src/loki-indexed-adapter.js" "$dest/loki-indexed-adapter.js"
# The incremental one saves only the changed chunks of 100 records: the cost of a save does not
# grow with what is stored. The one above stays for reading databases saved by older clients.
install -m 0644 "$l/src/incremental-indexeddb-adapter.js" "$dest/incremental-indexeddb-adapter.js"
install -m 0644 "$l/LICENSE.txt" "$dest/LICENSE.lokijs"

sum() { sha256sum "$dest/$1" | cut -d' ' -f1; }
cat >"$dest/VERSIONS.md" <<EOF
# Vendored browser libraries

Written by \`scripts/vendor-web.sh\` from the npm registry; do not edit these files by hand.
To update, change the pinned version in the script and run it.

| package | version | file | from the package | licence | sha256 |
| --- | --- | --- | --- | --- | --- |
| sockjs-client | $SOCKJS_VERSION | sockjs.min.js | dist/sockjs.min.js | MIT (LICENSE.sockjs-client) | $(sum sockjs.min.js) |
| lokijs | $LOKI_VERSION | lokijs.min.js | build/lokijs.min.js | MIT (LICENSE.lokijs) | $(sum lokijs.min.js) |
| lokijs | $LOKI_VERSION | loki-indexed-adapter.js | src/loki-indexed-adapter.js | MIT (LICENSE.lokijs) | $(sum loki-indexed-adapter.js) |
| lokijs | $LOKI_VERSION | incremental-indexeddb-adapter.js | src/incremental-indexeddb-adapter.js | MIT (LICENSE.lokijs) | $(sum incremental-indexeddb-adapter.js) |

sockjs.min.js ends with a \`sourceMappingURL\` comment; the map is not vendored (browsers fetch it
only when developer tools are open, and a missing map is harmless).
EOF
echo "vendor-web: web/vendor refreshed (sockjs-client $SOCKJS_VERSION, lokijs $LOKI_VERSION)"
