#!/usr/bin/env bash
# Installs what credagent needs to build, run its quickstart and run its tests on Debian 12.
# Needs root (or sudo).  Safe to run again.
set -euo pipefail

SUDO=
if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
        SUDO=sudo
fi

packages=(
        # build
        meson ninja-build pkg-config gcc clang
        libp11-kit-dev libcurl4-openssl-dev libssl-dev libjson-c-dev libinih-dev
        libmicrohttpd-dev libseccomp-dev libcmocka-dev
        # run: the PKCS#11 token and p11-kit's modules
        p11-kit p11-kit-modules softhsm2
        # tests and quickstart: CA tooling, pytest, systemd-analyze, ss (iproute2), curl (bench)
        openssl ca-certificates python3 python3-pytest procps systemd iproute2 curl
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The local test IdP runs on Node.js; Debian 12's own nodejs (18) and npm are enough.
if ! command -v node >/dev/null; then
        missing+=(nodejs)
fi
if ! command -v npm >/dev/null; then
        missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
        echo "install-deps: installing ${missing[*]}" >&2
        $SUDO apt-get update -q
        $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
