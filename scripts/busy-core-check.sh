#!/usr/bin/env bash
# Flakiness check: `npm test` three times in a row while another process keeps
# one core busy (a tight loop), as a loaded CI machine or a colleague's build
# would. Prints each run's `N passed, N failed` line; exits non-zero if any
# run failed. The busy process is stopped however this script ends (trap).
#
#   npm run test:busy            (or scripts/busy-core-check.sh [runs])
#
# Not part of .ci/run: three full runs take three times `npm test`.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-3}"
logdir="$(mktemp -d "${TMPDIR:-/tmp}/shardcache-busy-XXXXXX")"
busy=""

stop_busy() {
  if [ -n "$busy" ]; then
    kill "$busy" 2>/dev/null
    wait "$busy" 2>/dev/null
    busy=""
  fi
}
trap 'stop_busy' EXIT
trap 'stop_busy; exit 130' INT TERM

node -e 'for (;;) {}' &
busy=$!
echo "busy-core-check: pid $busy keeps one core busy; $runs runs of npm test; logs in $logdir"

failed=0
results=()
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  npm test >"$logdir/run-$i.log" 2>&1
  code=$?
  secs=$(( $(date +%s) - start ))
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$logdir/run-$i.log" | tail -1)"
  [ -n "$line" ] || line="no result line (exit $code)"
  fails="$(grep -E '^FAIL  ' "$logdir/run-$i.log" | tr '\n' ';')"
  results+=("run $i: $line (${secs} s, exit $code)${fails:+  $fails}")
  echo "${results[-1]}"
  [ "$code" -eq 0 ] || failed=1
done

stop_busy
echo "busy-core-check: summary"
printf '  %s\n' "${results[@]}"
exit "$failed"
