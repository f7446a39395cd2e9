/* vpd signals: graceful preemption (SIGTERM, SIGUSR1 = Slurm's --signal) and the exit
 * statuses the job scripts act on.
 *
 * The handler only records the signal; the run loop polls vpd_signal_pending() at each
 * step boundary, all ranks agree with an MPI_Allreduce, write a checkpoint, and exit with
 * VPD_EXIT_REQUEUE. A second signal while the first is being handled ends the process at
 * once with status 128 + signal (the shell convention), so `scancel` twice always works --
 * but only when it arrives at least VPD_SIGNAL_INSIST_S seconds (default 2; the environment
 * variable of that name overrides) after the first: one preemption often reaches vpd more
 * than once within milliseconds (Slurm signals the whole process group, so vpd gets the
 * TERM and then the USR1 that jobscripts/vpd_run.sh forwards; mpirun forwards a TERM the
 * ranks already got), and such an echo must never cost the checkpoint. A SIGTERM from the Open
 * MPI launcher (the rank's parent when OMPI_COMM_WORLD_SIZE is set) never counts as the second
 * signal: mpirun sends TERM only in its abort sequence, odls_base_sigkill_timeout seconds after
 * it got the preemption's TERM itself (the ranks often got that one from the process group),
 * and SIGKILLs as long again; its KILL, not vpd, ends a job the user insists on ending.
 *
 * A bare Open MPI 4.1 mpirun that receives SIGTERM always exits 1 (orte/mca/ess/hnp:
 * clean_abort sets the job's exit status to ORTE_ERROR_DEFAULT_EXIT_CODE = 1 before any rank
 * ends, and ORTE_UPDATE_EXIT_STATUS never overwrites a non-zero status), even when every rank
 * checkpointed and exited 75. The checkpoint is complete when the ranks finish it within
 * odls_base_sigkill_timeout seconds of their TERM (raise OMPI_MCA_odls_base_sigkill_timeout);
 * for status 75 send mpirun USR1 (forwarded, no abort) or run it under jobscripts/vpd_run.sh. */
#ifndef VPD_SIGNALS_H
#define VPD_SIGNALS_H

#include <stdbool.h>

/* Exit status of `vpd decompose` after a signal-triggered checkpoint: 75 = EX_TEMPFAIL
 * (sysexits.h), "try again later". Job scripts turn it into `scontrol requeue`. */
#define VPD_EXIT_REQUEUE 75
/* a second signal sooner than this (seconds) after the first is the same preemption */
#define VPD_SIGNAL_INSIST_S 2.0

/* Install the SIGTERM and SIGUSR1 handlers (idempotent). */
void vpd_signals_install(void);
/* The first signal received (0 = none). */
int vpd_signal_pending(void);
/* Forget a pending signal (tests). */
void vpd_signal_clear(void);

#endif
