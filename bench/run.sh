#!/usr/bin/env bash
# Sluice's load benchmarks, in one session on one machine, so that every figure is a ratio to a peer measured in the
# same run. Each server under test is pinned to core 0 (taskset); the load generator and the echo backend share
# core 1. See docs/benchmarks.md for what each figure means and the latest results.
#
#   bench/run.sh                  the default parts: echo proxies latency chain deflate memory fanout fanout-redis
#   bench/run.sh proxies          one part: echo | proxies | latency | chain | deflate | memory | fanout | fanout-redis | recovery | fanout-cluster
#   SECONDS_PER_RUN=5 bench/run.sh latency    shorter runs (proxies, chain: ROUNDS=3 rounds of ROUND_SECONDS=10 each)
#   C=1 DEPTH=1 bench/run.sh proxies          C connections with DEPTH messages in flight each (default 50 and 4)
#   PROBE_WAIT=0 PROBE_RETRIES=0 bench/run.sh proxies   never wait for the cores' normal speed nor measure a slot again
#                                 (defaults 180 s and 1; PROBE_SLOW=1.3, PROBE_WAIT_STEP=5, PROBE_FAST seeds the fastest probes)
#
# Results: artifacts/bench/<part>.json (one object per target), <part>.md (a table), proxies.svg (the chart), verdict.md
# (issue 18's targets); OUT=DIR writes them elsewhere. bench/repeat.sh N runs this N times and summarizes.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("${@:-echo proxies latency chain deflate memory fanout fanout-redis}")
parts=(${parts[*]})
run_seconds=${SECONDS_PER_RUN:-10}
out=${OUT:-artifacts/bench}
mkdir -p "$out"

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# node's ws peer serves the single-node parts only; the Redis parts run Sluice nodes alone.
if [[ " ${parts[*]} " =~ \ (echo|proxies|memory|fanout|deflate)\  ]]; then
  [[ -d bench/node/node_modules ]] || (cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "==> dotnet build"
dotnet build bench/Sluice.LoadTest -c Release -nologo -v quiet -clp:ErrorsOnly
dotnet build src/Sluice.Gateway -c Release -nologo -v quiet -clp:ErrorsOnly
LOAD=(dotnet bench/Sluice.LoadTest/bin/Release/net10.0/sluice-load.dll)
GATEWAY=(dotnet src/Sluice.Gateway/bin/Release/net10.0/Sluice.Gateway.dll)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
export DOTNET_TieredPGO=1 DOTNET_gcServer=0
# The memory part holds 9,000 proxied connections: 18,000 sockets in the proxy, more than a common limit of 20,000
# leaves once Sluice keeps a share of its descriptors for connections that have not upgraded (docs/configuration.md,
# "Connection budget"). Every proxy gets the same higher limit (raising the hard limit needs root).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

# The gateway's own runtime defaults (inline socket I/O, no tiering delay), given to .NET peers in their *-tuned rows.
TUNED=(DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 DOTNET_TC_CallCountingDelayMs=0)
# The load side (load generator, echo backend, fan-out clients) runs with them too, for every server under test: it
# then saturates later (59,000 instead of 47,000 round trips/s straight to the backend), so throughput ratios
# between proxies are less compressed by the load side's own ceiling.
LOAD_SIDE=(env "${TUNED[@]}" "${LOAD[@]}")
# The backend of the proxies, latency and chain parts: raw-echo, one epoll thread echoing each read's frames in one
# send, costs the load side's core far less than ASP.NET Core's echo loop (echo: a receive and a send per message), so
# the proxy under test, not the load side, sets the pace (docs/benchmarks.md, "The echo backend"). ECHO_BACKEND=echo
# gives the earlier runs' backend. The deflate part needs echo's permessage-deflate; the memory part keeps echo.
echo_backend=${ECHO_BACKEND:-raw-echo}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listens on $1" >&2; return 1
}

# start NAME CORE PORT COMMAND...: runs COMMAND pinned to CORE, waits for PORT, sets $started to its pid.
start() {
  local name=$1 core=$2 port=$3; shift 3
  taskset -c "$core" "$@" >"$out/$name.log" 2>&1 &
  started=$!
  pids+=("$started")
  wait_port "$port"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

tmp=$(mktemp -d)
# Other ports when another run holds these (the Redis parts keep theirs).
BACKEND_PORT=${BACKEND_PORT:-7001}
PROXY_PORT=${PROXY_PORT:-7100}

write_configs() {
  cat >"$tmp/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;
error_log $tmp/nginx-error.log warn; pid $tmp/nginx.pid;
events { worker_connections 19000; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx-body; proxy_temp_path $tmp/nginx-proxy;
  fastcgi_temp_path $tmp/nginx-fcgi; uwsgi_temp_path $tmp/nginx-uwsgi; scgi_temp_path $tmp/nginx-scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$PROXY_PORT;
    location / {
      proxy_pass http://127.0.0.1:$BACKEND_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h; proxy_buffering off;
    }
  }
}
EOF
  cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9500
  fd-hard-limit 20000
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend ws
  bind 127.0.0.1:$PROXY_PORT
  default_backend echo
backend echo
  server echo 127.0.0.1:$BACKEND_PORT
EOF
  cat >"$tmp/sluice-noop.json" <<EOF
{ "listen": ["http://127.0.0.1:$PROXY_PORT"], "limits": { "keepAliveSeconds": 0, "idleTimeoutSeconds": 0 },
  "routes": [ { "path": "/{**rest}", "proxy": { "target": "ws://127.0.0.1:$BACKEND_PORT/\${params.rest}" }, "inbound": ["a", "b", "c"] } ],
  "policies": { "a": { "type": "size-limit", "options": { "maxBytes": 16777216 } },
                "b": { "type": "size-limit", "options": { "maxBytes": 16777216 } },
                "c": { "type": "size-limit", "options": { "maxBytes": 16777216 } } } }
EOF
  cat >"$tmp/sluice-redact.json" <<EOF
{ "listen": ["http://127.0.0.1:$PROXY_PORT"], "limits": { "keepAliveSeconds": 0, "idleTimeoutSeconds": 0 },
  "routes": [ { "path": "/{**rest}", "proxy": { "target": "ws://127.0.0.1:$BACKEND_PORT/\${params.rest}" }, "inbound": ["redact"] } ],
  "policies": { "redact": { "type": "json-redact", "options": { "paths": ["/password"], "mode": "remove" } } } }
EOF
  # permessage-deflate on both legs (the client's and the backend's), the three no-op policies of sluice-noop.
  cat >"$tmp/sluice-deflate.json" <<EOF
{ "listen": ["http://127.0.0.1:$PROXY_PORT"], "limits": { "keepAliveSeconds": 0, "idleTimeoutSeconds": 0 },
  "routes": [ { "path": "/{**rest}", "compression": true, "inbound": ["a", "b", "c"],
                "proxy": { "target": "ws://127.0.0.1:$BACKEND_PORT/\${params.rest}", "compression": true } } ],
  "policies": { "a": { "type": "size-limit", "options": { "maxBytes": 16777216 } },
                "b": { "type": "size-limit", "options": { "maxBytes": 16777216 } },
                "c": { "type": "size-limit", "options": { "maxBytes": 16777216 } } } }
EOF
  # A realistic chain: an API key gives the subject its rate limit partitions by (the limit far above any rate here),
  # a schema of the 10 properties the chain shape sends, redaction, and a log of 1% of the messages.
  cat >"$tmp/sluice-chain.json" <<EOF
{ "listen": ["http://127.0.0.1:$PROXY_PORT"], "limits": { "keepAliveSeconds": 0, "idleTimeoutSeconds": 0 },
  "routes": [ { "path": "/{**rest}", "proxy": { "target": "ws://127.0.0.1:$BACKEND_PORT/\${params.rest}" },
                "upgrade": ["key"], "inbound": ["size", "schema", "redact", "rate", "log"] } ],
  "policies": {
    "key": { "type": "api-key", "options": { "keys": [ { "key": "bench-key", "subject": "bench" } ] } },
    "size": { "type": "size-limit", "options": { "maxBytes": 65536 } },
    "schema": { "type": "json-schema", "options": { "schema": {
      "type": "object", "additionalProperties": false,
      "required": ["seq", "user", "action", "password", "amount", "currency", "active", "tags", "ts", "note"],
      "properties": {
        "seq": { "type": "string", "maxLength": 32 }, "user": { "type": "string", "minLength": 1, "maxLength": 64 },
        "action": { "enum": ["create", "update", "delete"] }, "password": { "type": "string", "maxLength": 128 },
        "amount": { "type": "integer", "minimum": 0 }, "currency": { "type": "string", "minLength": 3, "maxLength": 3 },
        "active": { "type": "boolean" }, "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 10 },
        "ts": { "type": "string", "maxLength": 40 }, "note": { "type": "string", "maxLength": 16384 } } } } },
    "redact": { "type": "json-redact", "options": { "paths": ["/password"] } },
    "rate": { "type": "rate-limit", "options": { "permits": 1000000, "perSeconds": 1, "partitionBy": "subject" } },
    "log": { "type": "log", "options": { "sample": 0.01 } } } }
EOF
}

# start_proxy NAME: starts the named proxy on core 0 in front of the backend; sets $started.
start_proxy() {
  case $1 in
    nginx) start nginx 0 $PROXY_PORT "$NGINX" -c "$tmp/nginx.conf" -p "$tmp" ;;
    haproxy) start haproxy 0 $PROXY_PORT "$HAPROXY" -f "$tmp/haproxy.cfg" ;;
    yarp) start yarp 0 $PROXY_PORT "${LOAD[@]}" yarp --port $PROXY_PORT --backend "ws://127.0.0.1:$BACKEND_PORT" ;;
    # YARP given the runtime settings the gateway ships with (docs/architecture.md, "Where the gateway's code runs"):
    # not a target, it shows how much of the gap to YARP is those settings and how much Sluice's own code.
    yarp-tuned) start yarp-tuned 0 $PROXY_PORT env "${TUNED[@]}" "${LOAD[@]}" yarp --port $PROXY_PORT --backend "ws://127.0.0.1:$BACKEND_PORT" ;;
    handwritten) start handwritten 0 $PROXY_PORT "${LOAD[@]}" handwritten --port $PROXY_PORT --backend "ws://127.0.0.1:$BACKEND_PORT" ;;
    node-noop) start node-noop 0 $PROXY_PORT node bench/node/proxy.mjs $PROXY_PORT "ws://127.0.0.1:$BACKEND_PORT" noop ;;
    node-redact) start node-redact 0 $PROXY_PORT node bench/node/proxy.mjs $PROXY_PORT "ws://127.0.0.1:$BACKEND_PORT" redact ;;
    sluice-library) start sluice-library 0 $PROXY_PORT "${LOAD[@]}" sluice-proxy --port $PROXY_PORT --backend "ws://127.0.0.1:$BACKEND_PORT" ;;
    sluice-noop) start sluice-noop 0 $PROXY_PORT "${GATEWAY[@]}" --config "$tmp/sluice-noop.json" ;;
    sluice-redact) start sluice-redact 0 $PROXY_PORT "${GATEWAY[@]}" --config "$tmp/sluice-redact.json" ;;
    node-deflate) start node-deflate 0 $PROXY_PORT node bench/node/proxy.mjs $PROXY_PORT "ws://127.0.0.1:$BACKEND_PORT" noop deflate ;;
    sluice-deflate) start sluice-deflate 0 $PROXY_PORT "${GATEWAY[@]}" --config "$tmp/sluice-deflate.json" ;;
    sluice-chain) start sluice-chain 0 $PROXY_PORT "${GATEWAY[@]}" --config "$tmp/sluice-chain.json" ;;
  esac
}

# load_run PART NAME PID ARGS...: one load run on core 1 through the proxy port against NAME (pid PID), the backend's
# CPU charged to the load side; its line goes to PART.jsonl.
load_run() {
  local part=$1 name=$2 pid=$3; shift 3
  taskset -c 1 "${LOAD_SIDE[@]}" load --name "$name" --url "ws://127.0.0.1:$PROXY_PORT/echo" --pid "$pid" --backend-pid "$backend" "$@" | tee -a "$out/$part.jsonl" || true
}

# core_probe CORE: user CPU seconds of a fixed shell loop on CORE. This VM's cores run at two speeds about 1.7x apart,
# in spells of tens of seconds to many minutes, each core on its own (docs/benchmarks.md, caveats). A slow core 0 makes
# the proxy cost more per round trip; a slow core 1 (the load side) starves it, and a proxy that waits for work between
# fewer messages per wake-up costs more per round trip too (the set at 2963e3c: 15-16 us instead of 10-11, at 85-89%
# of core 0, with core 0's probes normal). So both cores are probed before and after each slot of the parts in rounds
# (proxies, chain, fanout), into probes.jsonl, and slot below waits for both to run at normal speed.
core_probe() {
  taskset -c "$1" bash -c 'TIMEFORMAT=%U; { time (for ((i = 0; i < 200000; i++)); do :; done); } 2>&1'
}

# probe_judge P0 P1: folds a probe of each core into that core's fastest so far and prints "slow" as 1 when either
# probe is over PROBE_SLOW (1.3) times its core's fastest. PROBE_FAST seeds both (0.23 s on this machine at normal
# speed), for a run that starts in a slow spell.
probe_fastest0=${PROBE_FAST:-}
probe_fastest1=${PROBE_FAST:-}
probe_judge() {
  read -r probe_fastest0 probe_fastest1 slow < <(awk -v p0="$1" -v p1="$2" -v m0="$probe_fastest0" -v m1="$probe_fastest1" -v k="${PROBE_SLOW:-1.3}" \
    'BEGIN { f0 = (m0 == "" || p0 < m0) ? p0 : m0; f1 = (m1 == "" || p1 < m1) ? p1 : m1
             print f0, f1, ((p0 > k * f0 || p1 > k * f1) ? 1 : 0) }')
}

# probe_wait: probes both cores every PROBE_WAIT_STEP (5) seconds until neither is slow (probe_judge), for at most
# PROBE_WAIT (180) seconds; prints the last probes, the seconds waited and the fastest probes. slot calls it in a
# subshell, which is why it hands the fastest probes back.
probe_wait() {
  local p0 p1 waited=0
  while :; do
    p0=$(core_probe 0)
    p1=$(core_probe 1)
    probe_judge "$p0" "$p1"
    if [[ $slow == 0 || $waited -ge ${PROBE_WAIT:-180} ]]; then break; fi
    sleep "${PROBE_WAIT_STEP:-5}"
    waited=$((waited + ${PROBE_WAIT_STEP:-5}))
  done
  echo "$p0 $p1 $waited $probe_fastest0 $probe_fastest1"
}

# slot PART NAME ROUND RUNNER ARGS...: one slot of a part in rounds (RUNNER ARGS... writes its lines to .slot.jsonl).
# It first waits for both cores' normal speed (probe_wait), then measures; when a probe after it (or the last probe of
# a wait that ran out) was slow, it measures again, up to PROBE_RETRIES (1) times. A slot still slow after that is
# deferred to the end of its part (replay_deferred), when the spell is likely over; there the last attempt counts
# whatever its probes said. A slow attempt's lines go to PART-slow.jsonl, not to PART-rounds.jsonl, for every target
# alike: a slot in a slow spell costs about 1.4x per round trip, and two such slots of three decide a median
# (docs/benchmarks.md). Waiting rather than measuring again at once is what a spell of many minutes needs; deferring
# is what a spell longer than the wait needs (the first run at 046ead4 measured one target slow in two rounds of three,
# each after a 90 s wait that ran out).
deferred=()
slot_defers=1
slot() {
  local part=$1 name=$2 round=$3; shift 3
  local attempt before0 before1 waited after0 after1 retries=${PROBE_RETRIES:-1} slow_before
  for attempt in $(seq 0 "$retries"); do
    read -r before0 before1 waited probe_fastest0 probe_fastest1 < <(probe_wait)
    probe_judge "$before0" "$before1"
    slow_before=$slow
    rm -f "$out/.slot.jsonl"
    "$@"
    after0=$(core_probe 0)
    after1=$(core_probe 1)
    printf '{"part":"%s","name":"%s","round":%s,"attempt":%s,"probeBeforeSeconds":%s,"probeAfterSeconds":%s,"loadProbeBeforeSeconds":%s,"loadProbeAfterSeconds":%s,"waitedSeconds":%s,"deferred":%s}\n' \
      "$part" "$name" "$round" "$attempt" "$before0" "$after0" "$before1" "$after1" "$waited" "$((1 - slot_defers))" >>"$out/probes.jsonl"
    probe_judge "$after0" "$after1"
    [[ $slow_before == 1 ]] && slow=1
    if [[ $slow == 1 && $attempt -lt $retries ]]; then
      echo "  (a core slow around $name: core 0 ${before0}s and ${after0}s, core 1 ${before1}s and ${after1}s, against ${probe_fastest0}s and ${probe_fastest1}s, after ${waited}s of waiting; measured again)"
      cat "$out/.slot.jsonl" >>"$out/$part-slow.jsonl"
      continue
    fi
    if [[ $slow == 1 && $slot_defers == 1 ]]; then
      echo "  (a core still slow around $name: core 0 ${before0}s and ${after0}s, core 1 ${before1}s and ${after1}s; deferred to the end of $part)"
      cat "$out/.slot.jsonl" >>"$out/$part-slow.jsonl"
      deferred+=("$(printf '%q ' "$part" "$name" "$round" "$@")")
      break
    fi
    [[ $waited -gt 0 ]] && echo "  (waited ${waited}s for the cores' normal speed before $name)"
    cat "$out/.slot.jsonl" >>"$out/$part-rounds.jsonl"
    break
  done
  rm -f "$out/.slot.jsonl"
}

# replay_deferred: the slots slot deferred, in their order, each once more (with its waits and retries); they are not
# deferred again.
replay_deferred() {
  local entry entries=("${deferred[@]}")
  deferred=()
  slot_defers=0
  for entry in "${entries[@]}"; do
    eval "slot $entry"
  done
  slot_defers=1
}

proxy_slot() { # proxy_slot NAME LOAD-ARGS...: start the proxy, one load run, stop
  local name=$1; shift
  start_proxy "$name"
  local pid=$started
  load_run .slot "$name" "$pid" "$@"
  stop "$pid"
}

collect() { # collect PART: joins the result lines into a JSON array and prints the table
  { echo '['; paste -sd, "$out/$1.jsonl"; echo ']'; } >"$out/$1.json"
  "${LOAD[@]}" table "$out/$1.json" | tee "$out/$1.md"
}

# C connections, each with DEPTH messages in flight (closed loop).
# Ten seconds of load before measuring: at two, the .NET servers were still recompiling hot code (tiered PGO) on the
# core they serve from, which cost the gateway 20% more CPU per round trip and doubled its p99 (docs/benchmarks.md).
warmup=(--warmup "${WARMUP_SECONDS:-10}")
load_args=(--connections "${C:-50}" --size 128 --inflight "${DEPTH:-4}" --seconds "$run_seconds" "${warmup[@]}")
# The parts measured in rounds (proxies, chain): ROUND_SECONDS per round, ten so that the median of its seconds (the
# CPU per round trip, EpollLoad.PerSecondCost) outlasts a slow spell of up to four.
round_args=(--connections "${C:-50}" --size 128 --inflight "${DEPTH:-4}" --seconds "${ROUND_SECONDS:-10}" "${warmup[@]}")
write_configs
{ echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), .NET $(dotnet --version), node $(node --version), $("$NGINX" -v 2>&1 | cut -d/ -f2), haproxy $("$HAPROXY" -v | head -1 | cut -d' ' -f3)"; date -u; } >"$out/machine.txt"
: >"$out/probes.jsonl"

for part in "${parts[@]}"; do
  case $part in
  echo)
    # Host mode against the simplest System.Net.WebSockets echo: server on core 0, load on core 1.
    : >"$out/echo.jsonl"
    for server in echo host-echo; do
      start "$server" 0 $BACKEND_PORT "${LOAD[@]}" "$server" --port $BACKEND_PORT
      pid=$started
      taskset -c 1 "${LOAD_SIDE[@]}" load --name "$server" --url "ws://127.0.0.1:$BACKEND_PORT/echo" --pid "$pid" "${load_args[@]}" | tee -a "$out/echo.jsonl"
      stop "$pid"
    done
    collect echo
    ;;
  proxies)
    # In ROUNDS rounds (default 3), each target measured in turn for ROUND_SECONDS (default 10) after its warm-up, from
    # a fresh start; each figure is then the median of its rounds (sluice-load merge; the rounds themselves are in
    # proxies-rounds.jsonl). This machine's speed drifts by a third over minutes: measured in one slice each, two
    # targets minutes apart could differ by that much for no reason of their own.
    : >"$out/proxies-rounds.jsonl"
    : >"$out/proxies-slow.jsonl"
    start backend 1 $BACKEND_PORT "${LOAD_SIDE[@]}" "$echo_backend" --port $BACKEND_PORT
    backend=$started
    targets=(${PROXIES:-haproxy nginx yarp yarp-tuned handwritten node-noop sluice-library sluice-noop node-redact sluice-redact})
    for round in $(seq 0 $(( ${ROUNDS:-3} - 1 ))); do
      taskset -c 1 "${LOAD_SIDE[@]}" load --name direct --url "ws://127.0.0.1:$BACKEND_PORT/echo" --pid "$backend" --backend-pid "$backend" "${round_args[@]}" | tee -a "$out/proxies-rounds.jsonl" || true
      # Each round starts one target further on, so that no target is always measured next to the same others.
      shift_by=$(( round * ${#targets[@]} / ${ROUNDS:-3} ))
      for proxy in "${targets[@]:shift_by}" "${targets[@]:0:shift_by}"; do
        redacted=()
        [[ $proxy == *redact ]] && redacted=(--redacted)
        slot proxies "$proxy" "$round" proxy_slot "$proxy" "${round_args[@]}" "${redacted[@]}"
      done
    done
    replay_deferred
    stop "$backend"
    "${LOAD[@]}" merge "$out/proxies-rounds.jsonl" >"$out/proxies.jsonl"
    collect proxies
    "${LOAD[@]}" chart "$out/proxies.json" "$out/proxies.svg"
    ;;
  latency)
    # Per-hop latency: one connection, one message in flight, so nothing queues; p50 and p99 are the figures. The CPU
    # figures of these runs are mostly spin-waiting (.NET's thread pool spins before it sleeps): only latencies compare.
    : >"$out/latency.jsonl"
    start backend 1 $BACKEND_PORT "${LOAD_SIDE[@]}" "$echo_backend" --port $BACKEND_PORT
    backend=$started
    for proxy in ${LATENCY_PROXIES:-haproxy yarp yarp-tuned sluice-noop}; do
      start_proxy $proxy
      pid=$started
      load_run latency "$proxy" "$pid" --connections 1 --inflight 1 --size 128 --seconds "$run_seconds" "${warmup[@]}"
      stop "$pid"
    done
    stop "$backend"
    collect latency
    ;;
  chain)
    # The realistic chain next to the gateway's no-op chain, both with the same 10-property messages, in one run: in
    # rounds, as the proxies part, the two alternating.
    : >"$out/chain-rounds.jsonl"
    : >"$out/chain-slow.jsonl"
    start backend 1 $BACKEND_PORT "${LOAD_SIDE[@]}" "$echo_backend" --port $BACKEND_PORT
    backend=$started
    for round in $(seq 0 $(( ${ROUNDS:-3} - 1 ))); do
      targets=(sluice-noop sluice-chain)
      (( round % 2 == 1 )) && targets=(sluice-chain sluice-noop)
      for proxy in "${targets[@]}"; do
        redacted=()
        [[ $proxy == sluice-chain ]] && redacted=(--redacted)
        slot chain "$proxy" "$round" proxy_slot "$proxy" "${round_args[@]}" --size "${CHAIN_SIZE:-256}" --shape chain --header X-Api-Key:bench-key "${redacted[@]}"
      done
    done
    replay_deferred
    stop "$backend"
    "${LOAD[@]}" merge "$out/chain-rounds.jsonl" >"$out/chain.jsonl"
    collect chain
    ;;
  deflate)
    # permessage-deflate on both legs: the client offers it, the backend insists on it (400 otherwise), and the proxy
    # inflates and deflates every message on each leg. JSON of DEFLATE_SIZE bytes (default 1024), text that compresses
    # as real text does. The gateway keeps its default inflate cap (limits.maxMessageBytes, 1 MiB).
    : >"$out/deflate.jsonl"
    start backend 1 $BACKEND_PORT "${LOAD_SIDE[@]}" echo --port $BACKEND_PORT --deflate
    backend=$started
    for proxy in ${DEFLATE_PROXIES:-node-deflate sluice-deflate}; do
      start_proxy $proxy
      pid=$started
      load_run deflate "$proxy" "$pid" "${load_args[@]}" --size "${DEFLATE_SIZE:-1024}" --shape chain --deflate
      stop "$pid"
    done
    stop "$backend"
    collect deflate
    ;;
  memory)
    # 9,000 idle proxied connections held by one proxy process: memory per connection over its idle baseline.
    : >"$out/memory.jsonl"
    start backend 1 $BACKEND_PORT "${LOAD_SIDE[@]}" echo --port $BACKEND_PORT
    backend=$started
    for proxy in ${MEMORY_PROXIES:-haproxy nginx node-noop yarp handwritten sluice-noop}; do
      start_proxy $proxy
      pid=$started
      taskset -c 1 "${LOAD_SIDE[@]}" load --name warmup --url "ws://127.0.0.1:$PROXY_PORT/echo" --connections 10 --seconds 2 --warmup 1 >/dev/null || true
      # Then MEMORY_HANDSHAKE_WARMUP connections opened, held a second and closed: the handshake's code is compiled
      # and its pages touched before the baseline, in every proxy alike, so that what the 9,000 add is what each
      # connection costs rather than one-off costs spread over them (0 measures a cold handshake path, as before).
      # Few enough that memory they free and the 9,000 reuse moves the figure by at most 200/9,000 of it; enough for
      # the runtimes to compile the handshake's hot code (.NET tiers a method up after 30 calls).
      if [[ ${MEMORY_HANDSHAKE_WARMUP:-200} -gt 0 ]]; then
        taskset -c 1 "${LOAD_SIDE[@]}" idle --url "ws://127.0.0.1:$PROXY_PORT/echo" --connections "${MEMORY_HANDSHAKE_WARMUP:-200}" --seconds 1 >/dev/null 2>&1 || true
        sleep 2
      fi
      sleep 1
      base=$(rss_kib "$pid")
      taskset -c 1 "${LOAD_SIDE[@]}" idle --url "ws://127.0.0.1:$PROXY_PORT/echo" --connections 9000 --seconds 6 >"$out/idle-$proxy.log" 2>&1 &
      idle=$!
      for _ in $(seq 600); do grep -q READY "$out/idle-$proxy.log" && break; sleep 0.1; done
      sleep 2
      held=$(rss_kib "$pid")
      opened=$(awk '/READY/ { print $2 }' "$out/idle-$proxy.log")
      wait $idle || true
      echo "{\"name\":\"$proxy\",\"connections\":${opened:-0},\"openFileLimit\":$(ulimit -n),\"baselineMiB\":$((base / 1024)),\"heldMiB\":$((held / 1024)),\"kibPerConnection\":$(awk "BEGIN { printf \"%.1f\", ($held - $base) / (${opened:-1} > 0 ? ${opened:-1} : 1) }")}" | tee -a "$out/memory.jsonl"
      stop "$pid"
      sleep 1
    done
    stop "$backend"
    collect memory
    "${LOAD[@]}" verdict "$out" --part memory # per connection, and against node ws
    ;;
  fanout)
    # One 128-byte message to 1,000 and 10,000 subscribers, 200 publishes after 50 unmeasured ones (the servers' JIT
    # warms up, as in the echo parts); server on core 0, clients on core 1. At 10,000 subscribers, closed loop (the
    # targets), in FANOUT_ROUNDS rounds (default 3), each round starting one kind further on, each figure the median
    # of its rounds (sluice-load merge), as the proxies part: a slow spell of this machine once fell on Sluice's
    # single slot and took it from 115,000 to 83,000 deliveries/s. sluice and signalr run with the runtime's
    # defaults, as a library leaves them; their *-tuned rows with the gateway's runtime settings (TUNED above).
    : >"$out/fanout-rounds.jsonl"
    : >"$out/fanout-slow.jsonl"
    kinds=(${FANOUT_KINDS:-sluice signalr sluice-tuned signalr-tuned bare node})
    fanout_run() { # fanout_run KIND SUBSCRIBERS [ARGS...]: one server, a client run per ARG, their lines to .slot.jsonl
      local kind=$1 subscribers=$2; shift 2
      local server_kind=${kind%-tuned} settings=()
      [[ $kind == *-tuned ]] && settings=("${TUNED[@]}")
      if [[ $kind == node ]]; then start fanout-node 0 $BACKEND_PORT node bench/node/fanout.mjs $BACKEND_PORT
      else start "fanout-$kind" 0 $BACKEND_PORT env "${settings[@]}" "${LOAD[@]}" fanout-server --kind $server_kind --port $BACKEND_PORT; fi
      local pid=$started client_kind=$server_kind
      [[ $kind == node ]] && client_kind=sluice
      for extra in "$@"; do
        taskset -c 1 "${LOAD_SIDE[@]}" fanout --name "$kind" --kind $client_kind --url "ws://127.0.0.1:$BACKEND_PORT/ws" --subscribers $subscribers --publishes 200 $extra --pid "$pid" | tee -a "$out/.slot.jsonl" || true
      done
      stop "$pid"
      sleep 1
    }
    for kind in "${kinds[@]}"; do
      slot fanout "$kind/1000" 0 fanout_run "$kind" 1000 "" "--rate 50"
    done
    rounds=${FANOUT_ROUNDS:-3}
    for round in $(seq 0 $(( rounds - 1 ))); do
      shift_by=$(( round * ${#kinds[@]} / rounds ))
      for kind in "${kinds[@]:shift_by}" "${kinds[@]:0:shift_by}"; do
        slot fanout "$kind/10000" "$round" fanout_run "$kind" 10000 ""
      done
    done
    replay_deferred
    "${LOAD[@]}" merge "$out/fanout-rounds.jsonl" >"$out/fanout.jsonl"
    collect fanout
    ;;
  fanout-redis)
    # Two Sluice nodes on one redis-server: subscribers on node B, the publisher on node A. Both nodes on core 0.
    : >"$out/fanout-redis.jsonl"
    REDIS_PORT=7379
    start redis 1 $REDIS_PORT redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no
    redis=$started
    for subscribers in 1000 10000; do
      start node-a 0 7001 "${LOAD[@]}" fanout-server --kind sluice --port 7001 --redis 127.0.0.1:$REDIS_PORT
      node_a=$started
      start node-b 0 7002 "${LOAD[@]}" fanout-server --kind sluice --port 7002 --redis 127.0.0.1:$REDIS_PORT
      node_b=$started
      taskset -c 1 "${LOAD_SIDE[@]}" fanout --name "sluice-redis" --kind sluice --url "ws://127.0.0.1:7002/ws" --publish-url "ws://127.0.0.1:7001/ws" \
        --subscribers $subscribers --publishes 200 --settle-ms 3000 --pid "$node_b" | tee -a "$out/fanout-redis.jsonl" || true
      stop "$node_a"; stop "$node_b"; sleep 1
    done
    stop "$redis"
    collect fanout-redis
    ;;
  recovery)
    # History recovery: 1,000 clients that missed 1,000 messages published on node A reconnect at once to node B
    # with since; time until all are live, deliveries/s, node B's and redis-server's CPU. Nodes on core 0.
    : >"$out/recovery.jsonl"
    REDIS_PORT=7379
    start redis 1 $REDIS_PORT redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no
    redis=$started
    start node-a 0 7001 "${LOAD[@]}" fanout-server --kind sluice --port 7001 --redis 127.0.0.1:$REDIS_PORT --history 2000
    node_a=$started
    start node-b 0 7002 "${LOAD[@]}" fanout-server --kind sluice --port 7002 --redis 127.0.0.1:$REDIS_PORT --history 2000
    node_b=$started
    taskset -c 1 "${LOAD_SIDE[@]}" recovery --url "ws://127.0.0.1:7002/ws" --publish-url "ws://127.0.0.1:7001/ws" \
      --clients 1000 --missed 1000 --pid "$node_b" --redis-pid "$redis" | tee -a "$out/recovery.jsonl" || true
    stop "$node_a"; stop "$node_b"; stop "$redis"
    collect recovery
    ;;
  fanout-cluster)
    # Three Sluice nodes on one redis-server, 10,000 subscribers spread over them in turn, the publisher on node A:
    # two thirds of the deliveries cross Redis. The nodes on core 0, Redis and the clients on core 1; Redis's CPU is
    # read from /proc/PID/stat before and after. Not part of the default run (it is the second release's cluster figure).
    : >"$out/fanout-cluster.jsonl"
    REDIS_PORT=7379
    start redis 1 $REDIS_PORT redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no
    redis=$started
    for subscribers in ${CLUSTER_SUBSCRIBERS:-10000}; do
      start node-a 0 7001 "${LOAD[@]}" fanout-server --kind sluice --port 7001 --redis 127.0.0.1:$REDIS_PORT
      node_a=$started
      start node-b 0 7002 "${LOAD[@]}" fanout-server --kind sluice --port 7002 --redis 127.0.0.1:$REDIS_PORT
      node_b=$started
      start node-c 0 7003 "${LOAD[@]}" fanout-server --kind sluice --port 7003 --redis 127.0.0.1:$REDIS_PORT
      node_c=$started
      taskset -c 1 "${LOAD_SIDE[@]}" fanout --name "sluice-cluster-3" --kind sluice --url "ws://127.0.0.1:7001/ws" \
        --urls "ws://127.0.0.1:7001/ws,ws://127.0.0.1:7002/ws,ws://127.0.0.1:7003/ws" --publish-url "ws://127.0.0.1:7001/ws" \
        --subscribers $subscribers --publishes 200 --settle-ms 3000 --pid "$node_a" --redis-pid "$redis" | tee -a "$out/fanout-cluster.jsonl" || true
      stop "$node_a"; stop "$node_b"; stop "$node_c"; sleep 1
    done
    stop "$redis"
    collect fanout-cluster
    ;;
  *) echo "unknown part: $part (echo, proxies, latency, chain, deflate, memory, fanout, fanout-redis, recovery, fanout-cluster)" >&2; exit 2 ;;
  esac
done

# Which attempts ran while a core was slow: a probe around them over PROBE_SLOW times the run's fastest on that core.
# Such slots were measured again (slot above) unless it was their last attempt; this says which figures to doubt.
if [[ -s "$out/probes.jsonl" ]]; then
  echo "==> core probes (probes.jsonl): attempts with a probe over ${PROBE_SLOW:-1.3}x its core's fastest"
  awk -v k="${PROBE_SLOW:-1.3}" '
    function field(name,   v) { if (!match($0, "\"" name "\":[^,}]*")) return ""; v = substr($0, RSTART + length(name) + 3, RLENGTH - length(name) - 3); gsub(/"/, "", v); return v }
    function low(m, v) { return (v == "" || (m != "" && m <= v + 0)) ? m : v + 0 }
    { b0[NR] = field("probeBeforeSeconds") + 0; a0[NR] = field("probeAfterSeconds") + 0
      has1[NR] = field("loadProbeBeforeSeconds") != ""; b1[NR] = field("loadProbeBeforeSeconds") + 0; a1[NR] = field("loadProbeAfterSeconds") + 0
      w = field("waitedSeconds") + 0
      line[NR] = field("part") " " field("name") " round " field("round") " attempt " field("attempt") ": core 0 " b0[NR] " s before, " a0[NR] " s after" \
        (has1[NR] ? "; core 1 " b1[NR] " s before, " a1[NR] " s after" : "") (w > 0 ? " (waited " w " s)" : "") \
        (field("deferred") == "1" ? " (deferred)" : "")
      min0 = low(low(min0, b0[NR]), a0[NR]); if (has1[NR]) min1 = low(low(min1, b1[NR]), a1[NR]) }
    END { n = 0
          for (i = 1; i <= NR; i++)
            if (b0[i] > k * min0 || a0[i] > k * min0 || (has1[i] && (b1[i] > k * min1 || a1[i] > k * min1))) { print "  " line[i]; n++ }
          printf "  %d of %d attempts; fastest probes %.3f s (core 0), %s (core 1)\n", n, NR, min0, (min1 == "" ? "none" : sprintf("%.3f s", min1)) }' "$out/probes.jsonl"
fi

# Issue 18's targets against this run's parts (the others n/a), and the runs whose ratios are doubtful; also in verdict.md.
echo "==> targets"
"${LOAD[@]}" verdict "$out" --parts "${parts[*]}"
