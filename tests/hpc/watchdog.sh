#!/usr/bin/env bash
# A stopped rank must not hang the job for ever (issue 17, item 6): with VPD_WATCHDOG_S=T, when
# rank 1 is stopped (SIGSTOP) the job ends within about T seconds with a message naming rank 1
# (host, pid). Without the watchdog the same job waits for ever (not run here).
# usage: watchdog.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
B=runs/hpc_watchdog; rm -rf $B
VPD_WATCHDOG_S=4 $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $B --quiet --set steps=100000 > hpc_watchdog.log 2>&1 &
pid=$!
for i in $(seq 1 200); do grep -q '^{"step": 20' $B/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
sleep 1.5 # every watchdog has written its heartbeat
pid1=$(dd if=$B/.vpd-heartbeat bs=128 skip=1 count=1 2>/dev/null | awk '{print $2}')
[ -n "$pid1" ] && kill -0 "$pid1" || fail "no heartbeat of rank 1 in $B/.vpd-heartbeat"
echo "+ kill -STOP $pid1 (rank 1)"
kill -STOP "$pid1"
t0=$(date +%s)
for i in $(seq 1 60); do kill -0 $pid 2>/dev/null || break; sleep 1; done
if kill -0 $pid 2>/dev/null; then kill -CONT "$pid1"; kill -KILL "$pid1" $pid; fail "the job still hangs 60 s after rank 1 stopped"; fi
wait $pid; rc=$?
kill -0 "$pid1" 2>/dev/null && { kill -CONT "$pid1"; kill -KILL "$pid1"; }
echo "job ended $(( $(date +%s) - t0 )) s after the stop, status $rc"
grep "watchdog" hpc_watchdog.log | head -3
[ $rc -ne 0 ] || fail "a job with a stopped rank ended with status 0"
grep -q "watchdog: no step completed for .* rank 1 (host .*, pid $pid1) stopped responding" hpc_watchdog.log || fail "the message does not name rank 1"
echo "PASS: watchdog"
