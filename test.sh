#!/usr/bin/env bash
# Runs every Sluice test: unit, integration (real Kestrel on 127.0.0.1), interop (python3-websockets and
# node ws), Redis (a real redis-server) and browser (headless Chromium) tests.
#
# On a fresh Debian 12 with the .NET 10 SDK it first installs what the tests need, as root: apt packages
# (redis-server, python3-websockets, chromium, node and npm when missing) and the npm packages of
# tests/interop. Nothing is downloaded that is not a Debian or npm package.
#
#   ./test.sh            the whole suite (well under 15 minutes on 2 cores)
#   ./test.sh --long     also the soak tests (minutes of sustained traffic; see docs/reliability.md)
#   ./test.sh --filter X only tests whose name contains X (dotnet test --filter)
set -euo pipefail
cd "$(dirname "$0")"

long=0
filter=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --long) long=1 ;;
    --filter) filter="$2"; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

# 1. System packages.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || missing+=(python3-websockets)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh needs root to install ${missing[*]} (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. npm packages for the node peers and the browser driver.
if [[ ! -d tests/interop/node_modules ]] || [[ tests/interop/package-lock.json -nt tests/interop/node_modules ]]; then
  echo "==> npm ci (tests/interop)"
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. Build once, then run the test assemblies one at a time (they start real servers; 2 cores are shared).
echo "==> dotnet build"
dotnet build Sluice.slnx -c Release -nologo -v quiet -clp:ErrorsOnly

results=artifacts/test-results
rm -rf "$results"
export SLUICE_LONG_TESTS=$long
args=(test Sluice.slnx -c Release --no-build -nologo -m:1 --results-directory "$results" --logger "trx" --logger "console;verbosity=minimal")
if [[ -n "$filter" ]]; then
  args+=(--filter "$filter")
fi

echo "==> dotnet test"
status=0
dotnet "${args[@]}" || status=$?

# 4. One line with the totals of every assembly.
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [[ -f "$trx" ]] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
  e=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done
echo "$passed passed, $failed failed, $skipped skipped"
if [[ $status -ne 0 && $failed -eq 0 ]]; then
  echo "dotnet test exited with $status" >&2
fi
exit $status
