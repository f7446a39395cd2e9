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
 * ranks already got), and such an echo must never cost the checkpoint. */
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
