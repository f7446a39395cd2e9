#!/usr/bin/env bash
# Kill-and-resume at random points (issue 17): a run with every loss is killed several times at
# pseudo-random steps -- SIGKILL, SIGTERM (checkpoint at the next step, exit 75), SIGKILL while a
# checkpoint write is stalled half-made (test hook), then SIGKILL and SIGTERM again -- each time
# resumed with --resume until it completes, on 1 rank and on 2 ranks (mpiexec; SIGKILL goes to
# mpiexec and every rank at once, as a node failure or Slurm's final kill does; the signal to
# checkpoint goes to the ranks, then through mpiexec, see TERM below). The result (run.h5 and
# every metrics record) must be bitwise identical to an uninterrupted run on the same number
# of ranks.
# The kill steps come from a seed printed below (VPD_KILL_SEED overrides it); the step a kill
# actually lands on also depends on timing, and is printed with the step each resume started
# from.
# usage: kill_resume_random.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
STEPS=500
EVERY=7 # checkpoint interval: kills land between checkpoints and on them
SETS="--set steps=$STEPS --set checkpoint.every_steps=$EVERY"
SEQ="KILL TERM CKPT KILL TERM"
SEED=${VPD_KILL_SEED:-1717}
RANDOM=$SEED
echo "seed $SEED; $STEPS steps, a checkpoint every $EVERY; kills: $SEQ; on 1 and 2 ranks"
rm -rf runs/hpc_kr_* hpc_kr_figures.log
ms() { date +%s%3N; }
secs() { printf "%d.%d" $(($1 / 1000)) $(($1 % 1000 / 100)); } # milliseconds as seconds, 1 decimal
t_all=$(ms)

# last_step RUN_DIR: the step of the last complete record of metrics.jsonl (-1 if none)
last_step() {
  local s
  s=$(grep -o '^{"step": [0-9]*,' "$1/metrics.jsonl" 2>/dev/null | tail -n 1 | tr -dc 0-9)
  echo "${s:--1}"
}
# wait_step RUN_DIR N PID: until the run started as PID has logged step N (fails if it ends first)
wait_step() {
  local i
  for i in $(seq 1 3000); do
    [ "$(last_step "$1")" -ge "$2" ] && return 0
    kill -0 "$3" 2> /dev/null || { wait "$3"; fail "the run ended (status $?) before step $2, where it was to be killed (log: $LOG)"; }
    sleep 0.02
  done
  fail "step $2 not reached in 60 s (log: $LOG)"
}
# The job runs in its own session (setsid; its id is the pid of vpd or mpiexec). Open MPI puts
# each rank in a process group of its own, but in mpiexec's session.
# kill9_job SID PID: SIGKILL to every process of the session at once (a node failure, Slurm's
# final kill), then wait until none is left (a killed job must not write on)
# in_session SID [NAME]: the live processes of the session (of that command name)
in_session() { ps -o pid=,stat=,comm= --sid "$1" | awk -v c="${2:-}" '$2 !~ /^Z/ && (c == "" || $3 == c) {print $1}'; }
kill9_job() {
  local i
  kill -KILL $(in_session "$1") 2> /dev/null; wait "$2" 2> /dev/null
  for i in $(seq 1 200); do [ -z "$(in_session "$1")" ] && return 0; sleep 0.05; done
  fail "processes of the killed job (session $1) still run 10 s after SIGKILL: $(in_session "$1" | tr '\n' ' ')"
}

for NP in 1 2; do
  L=""; [ "$NP" -gt 1 ] && L="$MPIEXEC -n $NP"
  A=runs/hpc_kr_np${NP}_A; B=runs/hpc_kr_np${NP}_B
  t0=$(ms)
  expect_rc 0 kr_full_np$NP $L "$VPD" decompose "$CFG" --out $A --quiet $SETS
  t_ref=$(secs $(($(ms) - t0)))
  t0=$(ms)
  # the planned kill steps: one in each fifth of the first 3/5 of the run (the rest is margin:
  # on an idle machine 2 ranks run ~700 steps/s)
  n=0; prev=-1; report=""; terms=0
  for kind in $SEQ; do
    target=$(( 20 + n * (STEPS * 3 / 5 / 5) + RANDOM % (STEPS * 3 / 5 / 5 - 20) ))
    # after the previous kill the metrics file still holds the records up to where that run
    # died: aim past them, so the kill lands in the resumed run's training loop
    [ "$target" -le $((prev + 10)) ] && target=$((prev + 10))
    if [ $n -eq 0 ]; then ARGS="decompose $CFG --out $B --quiet $SETS"; else ARGS="decompose --resume $B --quiet"; fi
    LOG=hpc_kr_np${NP}_$n.log
    stall=""
    # CKPT: stall the write of the first checkpoint at or after the target, kill -9 inside it
    [ $kind = CKPT ] && stall=$(( (target + EVERY - 1) / EVERY * EVERY ))
    echo "+ ${stall:+VPD_CKPT_TEST_STALL_STEP=$stall }setsid $L vpd $ARGS   # $kind at step >= $target"
    # its own session: SIGKILL takes mpiexec and every rank at once
    env ${stall:+VPD_CKPT_TEST_STALL_STEP=$stall} setsid $L "$VPD" $ARGS > $LOG 2>&1 &
    pid=$!
    for i in $(seq 1 100); do sid=$(ps -o sid= -p $pid | tr -d ' '); [ "$sid" = "$pid" ] && break; sleep 0.02; done
    [ "$sid" = "$pid" ] || { kill -9 $pid; fail "setsid did not make the run a session leader (pid $pid, session $sid)"; }
    if [ $n -gt 0 ]; then
      for i in $(seq 1 600); do grep -q "resume: loaded" $LOG && break; kill -0 $pid 2> /dev/null || break; sleep 0.05; done
      from=$(sed -n 's/.*resume: loaded .* (step \([0-9]*\)).*/\1/p' $LOG)
      [ -n "$from" ] || { kill9_job $sid $pid; cat $LOG; fail "resume $n did not load a checkpoint (log: $LOG)"; }
      report="$report, resumed from $from"
    fi
    case $kind in
      KILL)
        wait_step $B $target $pid
        kill9_job $sid $pid
        at=$(last_step $B)
        echo "  SIGKILL with step $at the last one logged; newest checkpoint: $(ls $B/checkpoints | grep '^ckpt-' | tail -n 1)"
        report="$report; SIGKILL after step $at" ;;
      TERM)
        wait_step $B $target $pid
        # 1 rank: SIGTERM to vpd. 2 ranks: SIGTERM to every rank (as Slurm signals each task),
        # the second time SIGUSR1 to mpiexec, which forwards it to the ranks at once: that is how
        # jobscripts/vpd_run.sh passes a preemption on. (A SIGTERM of its own Open MPI's mpiexec
        # does not forward: it aborts the job, SIGTERM to the ranks ~2 s later, SIGKILL 1 s after
        # that, status 1; hence the script's USR1 -- tested in preempt_group.sh.)
        to=$pid; sig=TERM; via=""
        if [ "$NP" -gt 1 ] && [ $terms -eq 0 ]; then
          to=$(in_session $sid vpd | tr '\n' ' '); via=" to each rank"
          [ $(echo $to | wc -w) -eq $NP ] || { kill9_job $sid $pid; fail "found the processes '$to' for $NP ranks"; }
        elif [ "$NP" -gt 1 ]; then sig=USR1; via=" to mpiexec"; fi
        terms=$((terms + 1))
        kill -$sig $to; wait $pid; rc=$?
        tail -n 2 $LOG
        grep -q "stopping after signal" $LOG || fail "SIG$sig$via at step >= $target on $NP rank(s): vpd did not stop at a step boundary (status $rc, log: $LOG)"
        [ $rc -eq 75 ] || fail "SIG$sig$via at step >= $target on $NP rank(s): exit status $rc, expected 75 (log: $LOG)"
        at=$(sed -n 's/.*checkpoint at step \([0-9]*\):.*(signal)$/\1/p' $LOG | tail -n 1)
        [ -n "$at" ] || fail "SIG$sig: no checkpoint written for the signal (log: $LOG)"
        [ -f $B/checkpoints/$(printf 'ckpt-%08d.h5' $at) ] || fail "SIG$sig: checkpoint of step $at missing"
        echo "  SIG$sig$via: checkpoint at step $at, exit 75"
        report="$report; SIG$sig$via -> checkpoint at step $at" ;;
      CKPT)
        tmp=$B/checkpoints/$(printf '.ckpt-%08d.h5.tmp' $stall)
        for i in $(seq 1 3000); do
          [ -f $tmp ] && grep -q "stalling inside the checkpoint write of step $stall" $LOG && break
          kill -0 $pid 2> /dev/null || { wait $pid; fail "the run ended (status $?) before the stalled checkpoint write of step $stall (log: $LOG)"; }
          sleep 0.02
        done
        [ -f $tmp ] || { kill9_job $sid $pid; fail "the stalled checkpoint write of step $stall never started (log: $LOG)"; }
        sleep 0.$((RANDOM % 5))
        kill9_job $sid $pid
        [ -f $tmp ] || fail "the half-written $tmp is gone after SIGKILL"
        [ ! -f $B/checkpoints/$(printf 'ckpt-%08d.h5' $stall) ] || fail "the unfinished checkpoint of step $stall has its final name"
        echo "  SIGKILL inside the checkpoint write of step $stall; newest complete: $(ls $B/checkpoints | grep '^ckpt-' | tail -n 1)"
        report="$report; SIGKILL inside the write of checkpoint $stall"
        at=$stall ;;
    esac
    [ ! -f $B/run.h5 ] || fail "the run finished before kill $n ($kind): the kill steps assume a slower machine; raise STEPS"
    prev=$at; n=$((n + 1))
  done
  LOG=hpc_kr_np${NP}_final.log
  expect_rc 0 kr_np${NP}_final $L "$VPD" decompose --resume $B --quiet
  from=$(sed -n 's/.*resume: loaded .* (step \([0-9]*\)).*/\1/p' $LOG)
  report="$report, resumed from $from, completed"
  ls $B/checkpoints/.ckpt-*.tmp > /dev/null 2>&1 && fail "a stale temporary checkpoint was left behind: $(ls $B/checkpoints)"
  grep -h "resume: skipping" hpc_kr_np${NP}_*.log && echo "  (a damaged checkpoint was skipped, see above)"
  compare_exact $A $B
  nrec=$(wc -l < $B/metrics.jsonl); [ "$nrec" -eq $((STEPS + 1)) ] || fail "metrics.jsonl has $nrec records, expected $((STEPS + 1))"
  t_kill=$(secs $(($(ms) - t0)))
  printf 'FIGURES np%d: %d kills, %d resumes; %s; bitwise identical; wall %s s (reference %s s)\n' \
    $NP $n $n "${report#; }" $t_kill $t_ref | tee -a hpc_kr_figures.log
done
echo "PASS: kill_resume_random, seed $SEED, $(secs $(($(ms) - t_all))) s in total"
