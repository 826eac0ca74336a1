#!/usr/bin/env bash
# credagent quickstart: from a fresh Debian 12 machine to an access token.
#
# Installs the packages, builds credagent, makes a SoftHSM2 token, starts the local test IdP
# (oidc-provider over HTTPS with a CA made here), stores a client secret in the token with
# `credctl secret put`, starts the agent and prints an access token fetched with `credctl`.
# The secret exists only in the token (and in the demo IdP's own client registration).
#
#   contrib/quickstart.sh          set up and print a token (leaves agent and IdP running)
#   contrib/quickstart.sh stop     stop the agent and the IdP started by a previous run
#
# Everything lives in $CREDAGENT_QUICKSTART_DIR (default /tmp/credagent-quickstart).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=${CREDAGENT_QUICKSTART_DIR:-/tmp/credagent-quickstart}
build=$top/build
export SOFTHSM2_CONF=$work/softhsm2.conf

if [ -t 2 ]; then
        say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
        say() { printf '==> %s\n' "$*" >&2; }
fi

stop_all() {
        if [ -S "$work/agent.sock" ]; then
                CREDAGENT_SOCK=$work/agent.sock "$build/agent/credagent" -k >/dev/null 2>&1 || true
        fi
        if [ -f "$work/idp.pid" ]; then
                kill "$(cat "$work/idp.pid")" 2>/dev/null || true
                rm -f "$work/idp.pid"
        fi
}

if [ "${1:-}" = "stop" ]; then
        stop_all
        echo "stopped; remove $work to forget the token"
        exit 0
fi

say "Installing packages"
"$top/contrib/install-deps.sh"

say "Building credagent"
[ -d "$build" ] || meson setup "$build" "$top" >/dev/null
ninja -C "$build" >/dev/null
(cd "$top/tests/idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

stop_all
rm -rf "$work"
mkdir -p "$work/tokens"
chmod 0700 "$work"
cd "$work"

say "Making a SoftHSM2 token"
cat > softhsm2.conf <<CONF
directories.tokendir = $work/tokens
objectstore.backend = file
log.level = ERROR
CONF
(umask 077; openssl rand -hex 16 > pin)
softhsm2-util --init-token --free --label credagent --so-pin "$(openssl rand -hex 16)" \
        --pin "$(cat pin)" >/dev/null

say "Starting the local IdP (oidc-provider over HTTPS)"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 7 -subj "/CN=credagent quickstart CA" -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out idp.key 2>/dev/null
openssl req -new -key idp.key -subj "/CN=127.0.0.1" -out idp.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > idp.ext
openssl x509 -req -in idp.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 -sha256 \
        -extfile idp.ext -out idp.pem 2>/dev/null
# The demo client's secret: made here, registered at the IdP, and stored in the token below.
secret=$(openssl rand -base64 30)
(umask 077; cat > idp.json <<JSON
{"port": 0, "host": "127.0.0.1", "cert": "$work/idp.pem", "key": "$work/idp.key",
 "ready_file": "$work/idp.ready", "token_ttl": 3600,
 "clients": [{"client_id": "quickstart-client", "client_secret": "$secret",
              "token_endpoint_auth_method": "client_secret_basic", "scope": "demo.read demo.write"}]}
JSON
)
nohup node "$top/tests/idp/server.js" --config "$work/idp.json" > idp.log 2>&1 &
echo $! > idp.pid
for _ in $(seq 100); do [ -s idp.ready ] && break; sleep 0.1; done
[ -s idp.ready ] || { echo "the IdP did not start:" >&2; tail idp.log >&2; exit 1; }
token_url=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_endpoint"])' idp.ready)

say "Writing $work/credagent.conf"
cat > credagent.conf <<CONF
[agent]
socket     = $work/agent.sock
module     = /usr/lib/softhsm/libsofthsm2.so
token      = pkcs11:token=credagent
pin_source = file:$work/pin
ca_file    = $work/ca.pem

[credential Demo]
label     = Quickstart demo client at the local IdP
token_url = $token_url
scope     = demo.read
CONF

say "Storing the client secret in the token: credctl secret put Demo.Shell"
uri=$(printf '%s' "$secret" | "$build/agent/credctl" -f credagent.conf secret put Demo.Shell)
unset secret
cat >> credagent.conf <<CONF

[principal Demo.Shell]
sequence      = 1
client_id     = quickstart-client
client_secret = $uri
users         = $(id -un)
CONF
"$build/agent/credagent" -f credagent.conf --check >&2

say "Starting credagent"
eval "$("$build/agent/credagent" -f credagent.conf)" >/dev/null
echo "agent socket: $CREDAGENT_SOCK" >&2

say "credctl token Demo"
"$build/agent/credctl" token Demo

cat >&2 <<MSG

That is an access token issued by the local IdP for a client secret that lives only in the
SoftHSM2 token ($work/tokens).  Try:
  export CREDAGENT_SOCK=$CREDAGENT_SOCK
  $build/agent/credctl whoami
  $build/agent/credctl token Demo --format json
  curl -s --unix-socket \$CREDAGENT_SOCK http://localhost/v1/token/Demo
Stop the agent and the IdP with: ${CREDAGENT_QUICKSTART_DIR:+CREDAGENT_QUICKSTART_DIR=$work }$0 stop
MSG
