#!/usr/bin/env bash
# Runs bench/run.sh N times, each run's results kept in artifacts/bench/run-K/ (emptied first), then prints each
# figure in every run with its median and spread, and each target's verdict in every run: issue 18 wants its targets
# met in every run. The summary is also written to artifacts/bench/summary.md.
#
#   bench/repeat.sh 3                     the default parts, three times
#   bench/repeat.sh 3 proxies latency     chosen parts (environment as for run.sh: SECONDS_PER_RUN, C, DEPTH, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:?usage: bench/repeat.sh N [PART...]}
shift
dirs=()
for k in $(seq "$runs"); do
  echo "==> run $k of $runs"
  rm -rf "artifacts/bench/run-$k"
  OUT="artifacts/bench/run-$k" bench/run.sh "$@"
  dirs+=("artifacts/bench/run-$k")
done

echo "==> summary of $runs runs"
dotnet bench/Sluice.LoadTest/bin/Release/net10.0/sluice-load.dll summary "${dirs[@]}" | tee artifacts/bench/summary.md
