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
testrun=""

stop_busy() {
  if [ -n "$busy" ]; then
    kill "$busy" 2>/dev/null
    wait "$busy" 2>/dev/null
    busy=""
  fi
}
# On a signal, the test run in progress goes too: its whole process group
# (npm, the runner; the runner ends the test file it runs, and the file's
# redis-servers die with it through their watchdog).
stop_all() {
  if [ -n "$testrun" ]; then
    kill -TERM -- "-$testrun" 2>/dev/null
    wait "$testrun" 2>/dev/null
    testrun=""
  fi
  stop_busy
}
trap 'stop_busy' EXIT
trap 'stop_all; exit 130' INT TERM
# Job control: each background job leads its own process group (see stop_all).
set -m

node -e 'for (;;) {}' &
busy=$!
echo "busy-core-check: pid $busy keeps one core busy; $runs runs of npm test; logs in $logdir"

failed=0
results=()
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  # In the background, so that a signal to this script is acted on at once (wait returns).
  npm test >"$logdir/run-$i.log" 2>&1 &
  testrun=$!
  wait "$testrun"
  code=$?
  testrun=""
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
