#!/usr/bin/env bash
# A stopped rank must not hang the job for ever (issue 17, item 6): with a watchdog of T seconds,
# when rank 1 is stopped (SIGSTOP) the job ends within about T seconds with a message naming
# rank 1 (host, pid) and the setting that armed it. Without the watchdog the same job waits for
# ever (not run here). The timeout comes from, in this order of precedence, `--watchdog T`, the
# environment's VPD_WATCHDOG_S=T, the config's checkpoint.watchdog_s: each run below also sets the
# next source in line to 1000 s, so a wrong precedence shows as a job that does not end.
# usage: watchdog.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
# stopped_rank NAME EXPECTED_SOURCE ENV_VALUE ARGS...: run 2 ranks, stop rank 1, expect the end
stopped_rank() {
  local name=$1 want=$2 envv=$3; shift 3
  local B=runs/hpc_watchdog_$name; rm -rf $B
  echo "+ ${envv:+VPD_WATCHDOG_S=$envv }$MPIEXEC -n 2 vpd decompose ... $*"
  if [ -n "$envv" ]; then VPD_WATCHDOG_S=$envv $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $B --quiet --set steps=100000 "$@" > hpc_watchdog_$name.log 2>&1 &
  else env -u VPD_WATCHDOG_S $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $B --quiet --set steps=100000 "$@" > hpc_watchdog_$name.log 2>&1 & fi
  local pid=$!
  for i in $(seq 1 200); do grep -q '^{"step": 20' $B/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
  sleep 1.5 # every watchdog has written its heartbeat
  local pid1; pid1=$(dd if=$B/.vpd-heartbeat bs=128 skip=1 count=1 2>/dev/null | awk '{print $2}')
  [ -n "$pid1" ] && kill -0 "$pid1" || { kill $pid; fail "$name: no heartbeat of rank 1 in $B/.vpd-heartbeat"; }
  echo "+ kill -STOP $pid1 (rank 1)"
  kill -STOP "$pid1"
  local t0; t0=$(date +%s)
  for i in $(seq 1 60); do kill -0 $pid 2>/dev/null || break; sleep 1; done
  if kill -0 $pid 2>/dev/null; then kill -CONT "$pid1"; kill -KILL "$pid1" $pid; fail "$name: the job still hangs 60 s after rank 1 stopped"; fi
  wait $pid; local rc=$?
  kill -0 "$pid1" 2>/dev/null && { kill -CONT "$pid1"; kill -KILL "$pid1"; }
  echo "job ended $(( $(date +%s) - t0 )) s after the stop, status $rc"
  grep "watchdog" hpc_watchdog_$name.log | head -3
  [ $rc -ne 0 ] || fail "$name: a job with a stopped rank ended with status 0"
  grep -q "watchdog: no step completed for .* ($want 4); rank 1 (host .*, pid $pid1) stopped responding" hpc_watchdog_$name.log ||
    fail "$name: the message does not name rank 1 and '$want 4'"
}
stopped_rank env VPD_WATCHDOG_S 4 --set checkpoint.watchdog_s=1000
stopped_rank option --watchdog 1000 --watchdog 4
stopped_rank config checkpoint.watchdog_s "" --set checkpoint.watchdog_s=4
# strict values: a bad option or variable is refused before anything runs
B=runs/hpc_watchdog_bad; rm -rf $B
expect_rc 2 watchdog_bad_opt "$VPD" decompose "$CFG" --out $B --quiet --watchdog 4s
grep -q "\-\-watchdog wants a number" hpc_watchdog_bad_opt.log || fail "--watchdog 4s: no clear message"
expect_rc 2 watchdog_neg_opt "$VPD" decompose "$CFG" --out $B --quiet --watchdog -3
expect_rc 2 watchdog_missing "$VPD" decompose "$CFG" --out $B --quiet --watchdog
grep -q "missing value for --watchdog" hpc_watchdog_missing.log || fail "--watchdog last: no 'missing value'"
VPD_WATCHDOG_S=abc run watchdog_bad_env "$VPD" decompose "$CFG" --out $B --quiet; rc=$?
[ $rc -ne 0 ] || fail "VPD_WATCHDOG_S=abc accepted"
grep -q "VPD_WATCHDOG_S='abc' is not a number" hpc_watchdog_bad_env.log || fail "VPD_WATCHDOG_S=abc: no clear message"
run watchdog_bad_key "$VPD" decompose "$CFG" --out $B --quiet --set checkpoint.watchdog_s=-1; [ $? -ne 0 ] || fail "checkpoint.watchdog_s=-1 accepted"
echo "PASS: watchdog"
