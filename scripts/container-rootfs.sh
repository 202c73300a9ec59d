#!/usr/bin/env bash
# Lays out the container image's files from a static pingedchat binary (scripts/release.sh):
#
#   scripts/container-rootfs.sh BINARY DIR
#
# DIR/rootfs/  the image's root: /pingedchat, the CA certificates (for the SMTP relay, S3, push
#              services and ACME), and /etc/passwd and /etc/group naming the unprivileged user
#              pingedchat (65532) the server runs as;
# DIR/data/    an empty directory that becomes the /data volume, owned by that user.
#
# The Containerfile's build stage runs it; the container test runs it on the host with a binary
# built there and hands DIR to `podman build --build-context build=DIR`, so both make the same
# image from the same script.
set -euo pipefail
bin=${1:?usage: container-rootfs.sh BINARY DIR}
dir=${2:?usage: container-rootfs.sh BINARY DIR}
uid=65532

ca=
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -s "$f" ]; then ca=$f; break; fi
done
if [ -z "$ca" ]; then
  echo "container-rootfs: no CA certificate bundle found (apt install ca-certificates)" >&2
  exit 2
fi

rm -rf "$dir/rootfs" "$dir/data"
mkdir -p "$dir/rootfs/etc/ssl/certs" "$dir/rootfs/tmp" "$dir/data"
install -m 0755 "$bin" "$dir/rootfs/pingedchat"
install -m 0644 "$ca" "$dir/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\npingedchat:x:%d:%d:pingedchat:/data:/sbin/nologin\n' "$uid" "$uid" > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\npingedchat:x:%d:\n' "$uid" > "$dir/rootfs/etc/group"
chmod 0644 "$dir/rootfs/etc/passwd" "$dir/rootfs/etc/group"
chmod 1777 "$dir/rootfs/tmp"
chown "$uid:$uid" "$dir/data"
chmod 0700 "$dir/data"
