#!/usr/bin/env bash
# credagent benchmarks (issue 5): builds a release build in build-bench, starts a SoftHSM2
# token, the local test IdP (tests/idp) and the agent, measures, and prints one table with
# every figure next to a baseline measured in the same run.  Benchmarks report; nothing here
# passes or fails on time.  Loopback and Unix sockets only; every process started here is
# stopped on exit.
#
#   tests/bench/run.sh                 everything (a few minutes on 2 cores)
#   BENCH_SECONDS=1 tests/bench/run.sh shorter load runs (default 2 s per row)
#   BENCH_SKIP_SCALE=1 ...             skip the 10/1,000/10,000-key memory runs
#
# Needs root (callers of other uids for the memory runs), meson, ninja, node + the IdP's npm
# packages (tests/idp: npm ci), softhsm2, openssl, /usr/bin/python3.  hyperfine is not used.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$top/build-bench}
secs=${BENCH_SECONDS:-2}
module=/usr/lib/softhsm/libsofthsm2.so
py=/usr/bin/python3

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the memory runs make callers of other uids)"

# ---------------------------------------------------------------- build
say "Building a release build in $build"
if [ ! -d "$build" ]; then
        meson setup "$build" "$top" --buildtype=release -Dtests=true >/dev/null
else
        meson setup --reconfigure "$build" "$top" --buildtype=release -Dtests=true >/dev/null
fi
ninja -C "$build" agent/credagent agent/credagent-front agent/credagent-net agent/credagent-hsm agent/credagent-config \
        agent/credctl agent/credctl-admin tests/bench/credagent-bench tests/bench/credagent-floor >/dev/null
credagent=$build/agent/credagent
credctl=$build/agent/credctl
bench=$build/tests/bench/credagent-bench
if [ ! -d "$top/tests/idp/node_modules/oidc-provider" ]; then
        (cd "$top/tests/idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# ---------------------------------------------------------------- processes and cleanup
work=$(mktemp -d /tmp/credagent-bench.XXXXXX)
chmod 0755 "$work" # callers of other uids reach the memory runs' sockets through it
pids=()
cleanup() {
        local p
        for p in "${pids[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${pids[@]}"; do
                for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$p" 2>/dev/null || true
        done
        rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget_pid() {
        local p keep=()
        for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
        pids=("${keep[@]}")
}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- SoftHSM2
say "SoftHSM2 token in $work/tokens"
export SOFTHSM2_CONF=$work/softhsm2.conf
mkdir -m 0700 "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$SOFTHSM2_CONF"
(umask 077; openssl rand -hex 16 > "$work/pin")
softhsm2-util --init-token --free --label credagent --so-pin "$(openssl rand -hex 16)" \
        --pin "$(cat "$work/pin")" >/dev/null

# ---------------------------------------------------------------- the IdP
say "Starting the local IdP"
(
        cd "$work"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=credagent bench CA" -out ca.pem \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
        openssl ecparam -name prime256v1 -genkey -noout -out idp.key 2>/dev/null
        openssl req -new -key idp.key -subj "/CN=127.0.0.1" -out idp.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > idp.ext
        openssl x509 -req -in idp.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
                -extfile idp.ext -out idp.pem 2>/dev/null
)
secret=$(openssl rand -base64 30)
(umask 077; cat > "$work/idp.json" <<JSON
{"port": 0, "host": "127.0.0.1", "cert": "$work/idp.pem", "key": "$work/idp.key",
 "ready_file": "$work/idp.ready", "token_ttl": 3600,
 "clients": [{"client_id": "bench-client", "client_secret": "$secret",
              "token_endpoint_auth_method": "client_secret_basic", "scope": "bench.read"}]}
JSON
)
node "$top/tests/idp/server.js" --config "$work/idp.json" > "$work/idp.log" 2>&1 &
idp_pid=$!
pids+=("$idp_pid")
for _ in $(seq 200); do [ -s "$work/idp.ready" ] && break; sleep 0.1; done
[ -s "$work/idp.ready" ] || { tail "$work/idp.log" >&2; die "the IdP did not start"; }
token_url=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_endpoint"])' "$work/idp.ready")
idp_base=${token_url%/token}
idp_stat() { # KEY: a number from /_test/stats
        curl -s --cacert "$work/ca.pem" "$idp_base/_test/stats" |
                $py -c 'import json,sys; d=json.load(sys.stdin); k=sys.argv[1].split("."); v=d
for p in k: v=v.get(p, 0) if isinstance(v, dict) else 0
print(v)' "$1"
}

# ---------------------------------------------------------------- configs and agents
agent_section() { # SOCKET [SOCKET_GROUP]
        cat <<CONF
[agent]
socket     = $1
module     = $module
token      = pkcs11:token=credagent
pin_source = file:$work/pin
ca_file    = $work/ca.pem
CONF
        [ -z "${2:-}" ] || echo "socket_group = $2"
}
credential() { # NAME TOKEN_URL
        printf '\n[credential %s]\ntoken_url = %s\nscope = bench.read\ntimeout = 30\n' "$1" "$2"
}
principal() { # CRED NAME SEQUENCE USERS
        printf '\n[principal %s.%s]\nsequence = %s\nclient_id = bench-client\nclient_secret = %s\nusers = %s\n' \
                "$1" "$2" "$3" "$uri" "$4"
}

agent_section "$work/main/agent.sock" > "$work/secret.conf"
uri=$(printf '%s' "$secret" | "$credctl" -f "$work/secret.conf" secret put Bench.Main)
unset secret

# start_agent CONFIG NAME: starts credagent -D (log: $work/NAME.log), waits until it is ready;
# sets agent_pid (the supervisor).
start_agent() {
        local conf=$1 name=$2 log=$work/$2.log
        "$credagent" -f "$conf" -D 2> "$log" &
        agent_pid=$!
        pids+=("$agent_pid")
        for _ in $(seq 300); do grep -q " ready on " "$log" 2>/dev/null && break; sleep 0.1; done
        grep -q " ready on " "$log" || { tail "$log" >&2; die "agent $name did not start"; }
        echo "$agent_pid" > "$work/$name.pid"
}
# agent_pids NAME: the supervisor and the current front, net and hsm (a restarted child has a
# new pid: the last "Started X process, pid N" line wins)
agent_pids() {
        local r p
        p=$(cat "$work/$1.pid")
        for r in front net hsm; do
                p+=" $(sed -n "s/.*Started $r process, pid //p" "$work/$1.log" | tail -1)"
        done
        echo "$p"
}
stop_agent() {
        kill "$agent_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
        forget_pid "$agent_pid"
}
# mem_of PIDS: "rss_kib pss_kib uss_kib fds" summed over PIDS (USS: private pages only)
mem_of() {
        local p rss=0 pss=0 uss=0 fds=0 v
        for p in $1; do
                v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"); rss=$((rss + v))
                v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"); pss=$((pss + v))
                v=$(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "/proc/$p/smaps_rollup"); uss=$((uss + v))
                v=$(ls "/proc/$p/fd" | wc -l); fds=$((fds + v))
        done
        echo "$rss $pss $uss $fds"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# memfd_of PIDS: KiB of the distinct memfds the processes hold (the supervisor keeps the encoded
# configuration in one: shared memory, which RSS does not count unless mapped)
memfd_of() {
        local p f seen="" kib=0 id sz
        for p in $1; do
                for f in /proc/"$p"/fd/*; do
                        case $(readlink "$f" 2>/dev/null) in "/memfd:"*) ;; *) continue ;; esac
                        id=$(stat -L -c %i "$f" 2>/dev/null) || continue
                        case " $seen " in *" $id "*) continue ;; esac
                        seen+=" $id"
                        sz=$(stat -L -c %s "$f" 2>/dev/null || echo 0)
                        kib=$((kib + (sz + 1023) / 1024))
                done
        done
        echo "$kib"
}
mem_each() { # PIDS: "supervisor=R front=R net=R hsm=R" (RSS, KiB)
        local p out="" i=0 names=(supervisor front net hsm)
        for p in $1; do
                out+="${names[$i]}=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status") "
                i=$((i + 1))
        done
        echo "$out"
}
kv() { # KEY LINE: the value of KEY=... in LINE
        sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $2"
}

# Callers of other uids (the cold storm, the memory rows) use uids from here on.
uid_base=200000

# The main configuration: Cached (keep-alive, new connections, the CLI, the soak), Storm (the
# cold storm), Slow1..100 (head-of-line: the IdP's slow fault endpoint, 3 s).
main_conf=$work/main.conf
{
        agent_section "$work/main/agent.sock" root # group root: the cold storm's callers of other uids
        credential Cached "$token_url"; principal Cached Root 1 root
        credential Storm "$token_url"; principal Storm Any 1 '*'
        for i in $(seq 100); do
                credential "Slow$i" "$idp_base/fault/slow/token?ms=3000"; principal "Slow$i" Root 1 root
        done
} > "$main_conf"
say "Starting the agent"
start_agent "$main_conf" main
sock=$work/main/agent.sock
export CREDAGENT_SOCK=$sock

first=$("$bench" get "$sock" /v1/token/Cached)
[ "$(kv status "$first")" = 200 ] || die "no token from the agent: $first"
resp_bytes=$(kv resp_bytes "$first")
req_bytes=$(kv req_bytes "$first")

"$bench" echo-server "$work/echo.sock" "$resp_bytes" > "$work/echo.out" &
echo_pid=$!
pids+=("$echo_pid")
for _ in $(seq 50); do grep -q ready "$work/echo.out" 2>/dev/null && break; sleep 0.1; done

if [ -n "${BENCH_HOLD:-}" ]; then
        # For exploring by hand: everything stays up until $work/hold is removed.
        touch "$work/hold"
        say "holding: CREDAGENT_SOCK=$sock, echo server $work/echo.sock, bench $bench; rm $work/hold to go on"
        while [ -e "$work/hold" ]; do sleep 1; done
fi

rows=()
row() { rows+=("$(printf '| %s |' "$(IFS='|'; echo "$*" | sed 's/|/ | /g')")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
fmt_k() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }

# ---------------------------------------------------------------- 1-3: floor, keep-alive, new connection
for mode in ka new; do
        for t in 1 2 8 64 256; do
                say "load $mode, $t callers: floor, then the agent"
                c0=$(cpu_ticks "$echo_pid")
                f=$("$bench" load "$work/echo.sock" /v1/token/Cached "$mode" "$t" "$secs")
                c1=$(cpu_ticks "$echo_pid")
                front_pid=$(sed -n 's/.*Started front process, pid //p' "$work/main.log" | tail -1)
                a0=$(cpu_ticks "$front_pid")
                a=$("$bench" load "$sock" /v1/token/Cached "$mode" "$t" "$secs")
                a1=$(cpu_ticks "$front_pid")
                bad=""
                [ "$(kv non200 "$a")$(kv errors "$a")" = 00 ] || bad=" — $(kv non200 "$a") non-200, $(kv errors "$a") errors (no answer in 5 s, or reset)"
                label=$([ "$mode" = ka ] && echo "keep-alive" || echo "new connection")
                # server CPU per request (front thread + kernel work on its behalf; 10 ms ticks)
                acpu=$(awk -v t=$((a1 - a0)) -v n="$(kv ok "$a")" 'BEGIN { if (n > 0) printf "%.1f", t * 10000 / n; else print "-" }')
                fcpu=$(awk -v t=$((c1 - c0)) -v n="$(kv ok "$f")" 'BEGIN { if (n > 0) printf "%.1f", t * 10000 / n; else print "-" }')
                row "$label, $t callers" "$(fmt_k "$(kv rps "$a")") req/s, p50 $(kv p50_us "$a") / p99 $(kv p99_us "$a") / p99.9 $(kv p999_us "$a") µs; front CPU $acpu µs/req$bad" \
                    "floor: $(fmt_k "$(kv rps "$f")") req/s, p50 $(kv p50_us "$f") / p99 $(kv p99_us "$f") / p99.9 $(kv p999_us "$f") µs; server CPU $fcpu µs/req" \
                    "p50 $(ratio "$(kv p50_us "$a")" "$(kv p50_us "$f")")×, req/s $(ratio "$(kv rps "$a")" "$(kv rps "$f")")×"
        done
done

# ---------------------------------------------------------------- 4: the CLI
say "credctl token, /bin/true, a libc-only client"
n_spawn=${BENCH_SPAWNS:-300}
t_true=$("$bench" spawn "$n_spawn" /bin/true)
t_ctl=$("$bench" spawn "$n_spawn" "$credctl" token Cached)
t_get=$("$bench" spawn "$n_spawn" "$bench" get "$sock" /v1/token/Cached)
row "credctl token (per call)" "mean $(kv mean_us "$t_ctl") µs, p50 $(kv p50_us "$t_ctl") µs ($(kv failed "$t_ctl") failed)" \
    "/bin/true: mean $(kv mean_us "$t_true") µs, p50 $(kv p50_us "$t_true") µs" \
    "$(ratio "$(kv mean_us "$t_ctl")" "$(kv mean_us "$t_true")")×"
row "a libc-only client (credagent-bench get)" "mean $(kv mean_us "$t_get") µs, p50 $(kv p50_us "$t_get") µs" \
    "/bin/true: mean $(kv mean_us "$t_true") µs" "$(ratio "$(kv mean_us "$t_get")" "$(kv mean_us "$t_true")")×"
if command -v curl >/dev/null; then
        t_curl=$("$bench" spawn "$n_spawn" "$(command -v curl)" -s --unix-socket "$sock" http://localhost/v1/token/Cached)
        row "curl --unix-socket (per call)" "mean $(kv mean_us "$t_curl") µs, p50 $(kv p50_us "$t_curl") µs" \
            "/bin/true: mean $(kv mean_us "$t_true") µs" "$(ratio "$(kv mean_us "$t_curl")" "$(kv mean_us "$t_true")")×"
fi

# ---------------------------------------------------------------- 5: cold storm
say "Cold storm: 1,000 callers for one cold key"
before=$(idp_stat token_requests)
# Four uids of 250 callers each: one uid may hold at most half of the front's 1,024 connections.
s=$("$bench" storm "$sock" /v1/token/Storm 1000 "$uid_base" 4)
after=$(idp_stat token_requests)
sleep 0.2
idp_ms=$(grep 'path="/token"' "$work/idp.log" | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p')
fetch_ms=$(grep 'fetch credential=Storm ' "$work/main.log" | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p')
row "cold storm, 1,000 callers" "IdP requests: $((after - before)); $(kv ok "$s") × 200, $(kv non200 "$s") other, $(kv errors "$s") failed; p50 $(kv p50_us "$s") / p99 $(kv p99_us "$s") / max $(kv max_us "$s") µs" \
    "IdP answer ${idp_ms:-?} ms (its log); agent fetch ${fetch_ms:-?} ms (front's log, hsm + TLS + IdP)" \
    "last answer $(kv last_answer_us "$s") µs after release"

# ---------------------------------------------------------------- 6: head-of-line
say "Head-of-line: cached requests while 100 fetches wait 3 s on the IdP"
hol_t=${BENCH_HOL_CALLERS:-1}
base=$("$bench" load "$sock" /v1/token/Cached ka "$hol_t" 2)
h=$("$bench" hol "$sock" Slow 100 500 /v1/token/Cached "$hol_t" 2 | tr '\n' ' ')
slow=${h#*slow }
row "head-of-line, $hol_t keep-alive caller(s), 100 fetches pending" \
    "p50 $(kv p50_us "$h") / p99 $(kv p99_us "$h") / p99.9 $(kv p999_us "$h") / max $(kv max_us "$h") µs, $(fmt_k "$(kv rps "$h")") req/s" \
    "no fetch pending: p50 $(kv p50_us "$base") / p99 $(kv p99_us "$base") / p99.9 $(kv p999_us "$base") µs" \
    "slow fetches: $(kv ok "$slow")/100 ok, $(kv answered_during_load "$slow") answered during the window $(kv load_window_ms "$slow") ms"

# ---------------------------------------------------------------- 7: soak
say "Soak: 1,000,000 cached keep-alive requests"
m0=$(mem_of "$(agent_pids main)")
k=$("$bench" load "$sock" /v1/token/Cached ka 2 600 "${BENCH_SOAK:-1000000}")
m1=$(mem_of "$(agent_pids main)")
read -r r0 p0 u0 f0 <<< "$m0"
read -r r1 p1 u1 f1 <<< "$m1"
row "soak, $(kv ok "$k") keep-alive requests ($(kv non200 "$k") non-200, $(kv errors "$k") errors)" \
    "after: RSS $(mib "$r1") MiB, PSS $(mib "$p1") MiB, USS $(mib "$u1") MiB, $f1 fds" \
    "before: RSS $(mib "$r0") MiB, PSS $(mib "$p0") MiB, USS $(mib "$u0") MiB, $f0 fds" \
    "RSS $((r1 - r0)) KiB, USS $((u1 - u0)) KiB, fds $((f1 - f0)); $(fmt_k "$(kv rps "$k")") req/s"
main_each=$(mem_each "$(agent_pids main)")
stop_agent
kill "$echo_pid" 2>/dev/null || true
forget_pid "$echo_pid"

# ---------------------------------------------------------------- 7: memory with N cached keys
# keys = principals (scopes are per credential): C credentials × P principals, principal j
# matching only uid BASE+j, so each of P callers (forked children that setresuid()) fills
# one key per credential.  Every principal uses the IdP's real token endpoint.
scale_row() { # KEYS CREDS PRINCIPALS
        # One file per credential in conf.d/ (the loader caps a file at 1 MiB).
        local keys=$1 nc=$2 np=$3 dir=$work/scale$1.d c j
        mkdir -p "$dir/conf.d"
        agent_section "$work/scale$keys/agent.sock" root > "$dir/credagent.conf"
        for c in $(seq "$nc"); do
                {
                        credential "Mem$c" "$token_url"
                        for j in $(seq 0 $((np - 1))); do principal "Mem$c" "U$j" $((j + 1)) $((uid_base + j)); done
                } > "$dir/conf.d/mem$c.conf"
        done
        local conf=$dir/credagent.conf
        say "Memory with $keys cached keys ($nc credentials × $np principals)"
        start_agent "$conf" "scale$keys"
        local e0 p paths=()
        e0=$(mem_of "$(agent_pids "scale$keys")")
        for c in $(seq "$nc"); do paths+=("/v1/token/Mem$c"); done
        p=$("$bench" populate "$work/scale$keys/agent.sock" "$uid_base" "$np" 32 0 "${paths[@]}")
        local e1 each
        e1=$(mem_of "$(agent_pids "scale$keys")")
        each=$(mem_each "$(agent_pids "scale$keys")")
        local mfd
        mfd=$(memfd_of "$(agent_pids "scale$keys")")
        read -r r0 p0 u0 f0 <<< "$e0"
        read -r r1 p1 u1 f1 <<< "$e1"
        row "memory, $keys cached keys" \
            "RSS $(mib "$r1") MiB, PSS $(mib "$p1") MiB, USS $(mib "$u1") MiB (RSS KiB: ${each% }); and the configuration's memfd, $(mib "$mfd") MiB, not in RSS" \
            "same agent before any key: RSS $(mib "$r0") MiB, PSS $(mib "$p0") MiB, USS $(mib "$u0") MiB" \
            "$(kv requests "$p") fetches, $(kv failed_requests "$p") failed, $(kv secs "$p") s"
        stop_agent
}
if [ -z "${BENCH_SKIP_SCALE:-}" ]; then
        scale_row 10 1 10
        scale_row 1000 1 1000
        scale_row 10000 4 2500
fi

# ---------------------------------------------------------------- the floor of those processes
# What a bare process of each kind takes once it has loaded and initialised the libraries that
# process must use (tests/bench/floor.c): the least the agent's processes could be.
floor=$build/tests/bench/credagent-floor
fl_libc=$(kv rss_kib "$("$floor" libc)")
fl_front=$(kv rss_kib "$("$floor" front)")
fl_net=$(kv rss_kib "$(GNUTLS_NO_IMPLICIT_INIT=1 "$floor" net)")
fl_hsm=$(kv rss_kib "$("$floor" hsm "$module")")
row "memory floor: bare processes with the same libraries" \
    "RSS $(mib $((fl_libc + fl_front + fl_net + fl_hsm))) MiB (KiB: libc-only=$fl_libc front-libs=$fl_front net-libs=$fl_net hsm-module=$fl_hsm)" \
    "libmicrohttpd+json-c; libcurl+OpenSSL initialised with a TLS context; SoftHSM2 initialised with a session" \
    "the least four such processes take, before any configuration or key"

# ---------------------------------------------------------------- the table
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo
echo "credagent $(git -C "$top" describe --always --dirty 2>/dev/null || echo '?') — $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) CPUs, $cpu, Linux $(uname -r); release build; agent run with -D, log to a file"
echo "request $req_bytes B, answer $resp_bytes B; load rows ${secs} s each; clients and agent share the CPUs"
echo
echo "| what | credagent | baseline (same run) | ratio / notes |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "Main agent's processes after the soak (RSS, KiB): $main_each"
echo "RSS counts shared library pages once per process; PSS divides them among the processes; USS is private pages only."
restarts=$(cat "$work"/*.log | grep -c "process [0-9]* killed by signal" || true)
echo "Agent processes killed and restarted during the run: $restarts"
[ "$restarts" = 0 ] || cat "$work"/*.log | grep "process [0-9]* killed by signal" | sed 's/^/  /'

