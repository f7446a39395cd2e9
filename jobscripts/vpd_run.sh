#!/usr/bin/env bash
# The part every vpd job script shares: start (or resume) one decomposition or transcoder run
# (`vpd transcoder` when CONFIG has a top-level `kind: plt|clt`), turn Slurm's early-warning
# signal into a checkpoint, and requeue the job after it.
#
#   vpd_run.sh RUN_DIR CONFIG.yaml [extra vpd decompose args...]
#
# Environment:
#   VPD_LAUNCH   how to start vpd, e.g. "srun --kill-on-bad-exit=1 vpd" (multi-node) or
#                "mpiexec -n 4 vpd"; default "vpd" (one rank). The first word may be a path.
#   VPD_RESUME   1: resume even when SLURM_RESTART_COUNT is 0 (manual resubmission)
#
# Protocol (README "HPC operations"):
#   - a requeued job (SLURM_RESTART_COUNT > 0) with a complete checkpoint in RUN_DIR resumes
#     with `vpd decompose --resume RUN_DIR` (`vpd transcoder --resume RUN_DIR`); otherwise the
#     run starts from the config;
#   - vpd runs in the background so this shell can take signals (bash runs traps only
#     between foreground commands); USR1 or TERM from Slurm (--signal=B:USR1@T, or
#     `scancel -b -s USR1 JOBID`) is passed to vpd, which checkpoints at the next step
#     boundary on every rank and exits 75 (EX_TEMPFAIL);
#   - one preemption, one signal: vpd (or mpirun/srun) runs in its own session (setsid), so a
#     signal to the job's process group (Slurm's cancel / time limit, `kill -TERM -- -PGID`)
#     reaches only this script, which passes USR1 on. (Before, vpd got the group's TERM and the
#     forwarded USR1 and took the second as "insisting"; a bare mpirun treats TERM as an abort
#     and exits 1 even when every rank checkpointed and exited 75.) vpd itself also ignores a
#     second signal sooner than VPD_SIGNAL_INSIST_S (default 2) seconds after the first; a later
#     one (scancel twice, KillWait) still ends it at once, 128 + signal;
#   - a bare Open MPI mpirun that itself gets SIGTERM (Slurm's time limit or `scancel` signal
#     every process of the job, not only this script) aborts: it exits 1 whatever the ranks do,
#     passes TERM to them odls_base_sigkill_timeout seconds later and SIGKILLs them as long
#     again (tests/hpc/mpirun_term.sh). So: after a signal, a launcher status other than 0/75
#     with a checkpoint written since the signal counts as 75 (the ranks checkpointed; only
#     the launcher's status is wrong). Raise OMPI_MCA_odls_base_sigkill_timeout when a step plus
#     a checkpoint write can take longer than it (default 1 s; under Slurm, KillWait bounds it);
#   - status 75 -> `scontrol requeue $SLURM_JOB_ID` (the job needs --requeue; use
#     --open-mode=append so the log of each start is kept). Any other status is the job's.
set -u
RUN_DIR=$1; CONFIG=$2; shift 2
LAUNCH=${VPD_LAUNCH:-vpd}
restarts=${SLURM_RESTART_COUNT:-0}
echo "[vpd_run] $(date -u +%FT%TZ) job ${SLURM_JOB_ID:-none} array ${SLURM_ARRAY_JOB_ID:-none}_${SLURM_ARRAY_TASK_ID:-none} restart $restarts on $(hostname)"
# a transcoder config (top-level `kind: plt` or `kind: clt`, configs/transcoder_*.yaml) runs
# `vpd transcoder` (checkpoint RUN_DIR/checkpoint.h5), any other `vpd decompose`
# (RUN_DIR/checkpoints/ckpt-*.h5); both take CONFIG --out RUN_DIR and --resume RUN_DIR
if grep -Eq '^kind:[[:space:]]*["'\'']?(plt|clt)["'\'']?[[:space:]]*(#.*)?$' "$CONFIG"; then
  cmd=transcoder; ckpt_glob="$RUN_DIR/checkpoint.h5"
else
  cmd=decompose; ckpt_glob="$RUN_DIR/checkpoints/ckpt-*.h5"
fi
# shellcheck disable=SC2086
if { [ "$restarts" -gt 0 ] || [ "${VPD_RESUME:-0}" = 1 ]; } && ls $ckpt_glob > /dev/null 2>&1; then
  set -- "$cmd" --resume "$RUN_DIR" "$@"
else
  set -- "$cmd" "$CONFIG" --out "$RUN_DIR" "$@"
fi
echo "[vpd_run] $LAUNCH $*"
# shellcheck disable=SC2086
if command -v setsid > /dev/null; then setsid $LAUNCH "$@" & else $LAUNCH "$@" & fi
child=$!
# a file whose time is the first signal's (checkpoints newer than it were written after it)
mark=""
forward() {
  echo "[vpd_run] $(date -u +%T) got SIG$1: asking vpd to checkpoint"
  if [ -z "$mark" ]; then mark=$(mktemp "${TMPDIR:-/tmp}/vpd_run.signal.XXXXXX"); fi
  kill -USR1 "$child" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
# wait returns early (> 128) when a trap ran; wait again until vpd itself has ended
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "[vpd_run] $(date -u +%T) vpd exited with status $rc"
if [ -n "$mark" ]; then
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 75 ]; then
    ck=$(find "$RUN_DIR"/checkpoints -maxdepth 1 -name 'ckpt-*.h5' -newer "$mark" 2>/dev/null | sort | tail -n 1)
    if [ -n "$ck" ]; then
      echo "[vpd_run] the launcher's status $rc came after the signal, and $ck was written since: taking it as 75"
      rc=75
    fi
  fi
  rm -f "$mark"
fi
if [ "$rc" -eq 75 ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "[vpd_run] checkpoint written; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    sleep 30  # scontrol requeue ends this script; do not report a status before it does
  fi
  exit 75
fi
exit "$rc"
