#!/usr/bin/env bash
# bench/scale.sh: how many concurrent mTLS device connections one vitalmq node holds, and in
# how much memory (issue 5's scale target). Run "bench/scale.sh --help".
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/scale.sh [--help]

Builds vitalmq, creates a CA (vitalmq init), starts vitalmq with one mTLS listener
(client_auth = "required", that CA as an external client CA) and memory_budget = $BUDGET,
then opens $CONNS idle connections with "vitalmq bench conns", each with its own client
certificate minted from the CA (a device identity), from source addresses 127.0.0.2 …
127.0.0.(SOURCES+1). It holds them for $HOLD, prints the load tool's table and writes its
JSON summary to $WORK/scale.json: connections held, connect rate, broker CPU per handshake,
broker memory per connection and in total (RSS from /proc).

memory_budget is where vitalmq starts refusing new connections and publications, and
"vitalmq serve" also makes it the Go runtime's soft memory limit (unless GOMEMLIMIT is set),
so the collector works harder instead of letting the heap grow to twice the live data.

Environment:
  CONNS=100000     connections (capped by ulimit -n: the tool and the broker each need one
                   descriptor per connection; raise the hard limit to go past it)
  BUDGET=2147483648  memory_budget in bytes (2 GiB)
  CLASSIC=0        1: offer only classic TLS key exchange (X25519), as most device TLS stacks
                   do; 0: Go's default, the post-quantum hybrid X25519MLKEM768 first
  SOURCES=250      source addresses (at most 253)
  CONCURRENCY=8    handshakes at a time
  HOLD=30s         how long the connections are held (PINGREQ at half the 60-s keep alive)
  BROKER_CPUS=     taskset CPU list for the broker (empty: not pinned)
  TOOL_CPUS=       taskset CPU list for the load tool (empty: not pinned)
  PORT=28900       the mTLS listener's port (127.0.0.1)
  WORK=            work directory (default: a new one under $TMPDIR)
EOF
}
[[ ${1:-} == --help || ${1:-} == -h ]] && {
	usage
	exit 0
}
[[ $# -eq 0 ]] || {
	usage >&2
	exit 2
}

die() {
	echo "scale.sh: $*" >&2
	exit 1
}
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

CONNS=${CONNS:-100000}
BUDGET=${BUDGET:-2147483648}
CLASSIC=${CLASSIC:-0}
SOURCES=${SOURCES:-250}
CONCURRENCY=${CONCURRENCY:-8}
HOLD=${HOLD:-30s}
BROKER_CPUS=${BROKER_CPUS:-}
TOOL_CPUS=${TOOL_CPUS:-}
PORT=${PORT:-28900}
for v in CONNS BUDGET SOURCES CONCURRENCY PORT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive number"
done
[[ $CLASSIC == 0 || $CLASSIC == 1 ]] || die "CLASSIC=$CLASSIC: want 0 or 1"
((SOURCES <= 253)) || die "SOURCES=$SOURCES: want 1..253"
[[ $HOLD =~ ^[0-9]+(ms|s|m)$ ]] || die "HOLD=$HOLD: want a duration such as 30s"
command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
pin() { # pin CPUS COMMAND...: become COMMAND, on CPUS (taskset) or anywhere; run in a subshell
	local cpus=$1
	shift
	if [[ -n $cpus ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
if ((CONNS > NOFILE - 200)); then
	log "ulimit -n is $NOFILE: $((NOFILE - 200)) connections instead of $CONNS (raise the hard limit for more)"
	CONNS=$((NOFILE - 200))
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/vitalmq-scale.XXXXXX")}
mkdir -p "$WORK"
log "work directory: $WORK"
BPID=
trap '[[ -z $BPID ]] || kill -KILL "$BPID" 2>/dev/null || true' EXIT

log "building vitalmq"
(cd "$ROOT" && go build -o "$WORK/vitalmq" ./cmd/vitalmq)
rm -rf "$WORK/data"
"$WORK/vitalmq" init --data-dir "$WORK/data" >"$WORK/init.log"
PKI=$WORK/data/pki
cat >"$WORK/vitalmq.toml" <<EOF
# vitalmq defaults but: memory_budget, no per-address connection limits (every connection
# comes from one of $SOURCES loopback addresses), warnings and errors only.
log_level = "warn"
[storage]
data_dir = "$WORK/data"
[broker]
memory_budget = $BUDGET
max_connections_per_address = 1000000
connection_rate = 1000000
connection_burst = 1000000
[[listener]]
name = "mtls"
type = "tls"
address = "127.0.0.1:$PORT"
client_auth = "required"
client_ca = "$PKI/ca.crt"
EOF
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	die "127.0.0.1:$PORT is in use (another broker?): set PORT"
fi
(pin "$BROKER_CPUS" "$WORK/vitalmq" serve --config "$WORK/vitalmq.toml") >"$WORK/vitalmq.log" 2>&1 &
BPID=$! # the broker itself: the subshell became taskset, which became vitalmq
for ((i = 0; i < 100; i++)); do
	"$WORK/vitalmq" bench conns --conns 1 --tls --cacert "$PKI/ca.crt" --client-ca-cert "$PKI/ca.crt" \
		--client-ca-key "$PKI/ca.key" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 && break
	kill -0 "$BPID" 2>/dev/null || die "vitalmq exited: $(tail -5 "$WORK/vitalmq.log")"
	sleep 0.1
done
kex=()
((CLASSIC)) && kex=(--classic-kex)
log "$CONNS mTLS connections from $SOURCES source addresses, memory_budget $BUDGET, hold $HOLD"
(pin "$TOOL_CPUS" "$WORK/vitalmq" bench conns --tls --cacert "$PKI/ca.crt" --addr "127.0.0.1:$PORT" \
	--client-ca-cert "$PKI/ca.crt" --client-ca-key "$PKI/ca.key" "${kex[@]}" --conns "$CONNS" \
	--sources "$SOURCES" --concurrency "$CONCURRENCY" --hold "$HOLD" --broker-pid "$BPID" --json) >"$WORK/scale.json"
jq -r '"held \(.alive) of \(.conns) connections (failed \(.failed)), \(.connects_per_s | floor) connects/s, key exchange \(.tls_key_exchange); broker: \(.broker.cpu_us_per_conn | floor) µs CPU per handshake, \(.broker.bytes_per_conn / 1024 * 10 | round / 10) KiB per connection, RSS held \(.broker.rss_held_bytes / 1048576 | round) MiB (peak \(.broker.vm_hwm_bytes / 1048576 | round) MiB)"' "$WORK/scale.json"
log "summary: $WORK/scale.json; broker log: $WORK/vitalmq.log"
