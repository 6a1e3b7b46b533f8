#!/usr/bin/env bash
# `make install-cluster`: Debian's nginx for deploy/cluster.py, installed with apt-get when absent.
# The cluster runs its own nginx (its own config, loopback ports): the system service that the
# package would start on port 80 is kept from starting.
set -euo pipefail

# (the places deploy/cluster.py's find_nginx looks: PATH, /usr/sbin, /usr/local/sbin)
for candidate in "$(command -v nginx || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        echo "nginx present: $candidate"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null; then
    echo "nginx is missing and apt-get is not available: install nginx (with its gRPC module) yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "nginx is missing: installing it needs root (run: apt-get update && apt-get install nginx)" >&2
        exit 1
    fi
fi

# policy-rc.d exit 101 = "do not start services" (the convention Docker images use).
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$guard" >/dev/null
    $SUDO chmod 755 "$guard"
    trap '$SUDO rm -f "$guard"' EXIT
fi
echo "installing nginx: apt-get update && apt-get install nginx"
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
# The package's own service may still have started where no guard was possible: stop it.
if [ -z "$guard" ] && [ -e /run/nginx.pid ]; then $SUDO nginx -s quit 2>/dev/null || true; fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx_bin" -V 2>&1 | grep -q -- "--with-http_v2_module" || {
    echo "the installed nginx lacks HTTP/2 (needed for gRPC)" >&2; exit 1; }
echo "nginx installed: $nginx_bin"
