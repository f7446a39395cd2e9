/* Preemption signals (include/vpd/signals.h). The handler is async-signal-safe: it stores
 * the signal number in a sig_atomic_t and, on a second signal at least VPD_SIGNAL_INSIST_S
 * seconds after the first, calls _exit. Everything
 * else (agreeing across ranks, checkpointing) happens in the run loop. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vpd/signals.h"

static volatile sig_atomic_t g_pending = 0;
static bool g_installed = false;
static struct timespec g_first;          /* when the first signal arrived */
static double g_insist_s = VPD_SIGNAL_INSIST_S; /* VPD_SIGNAL_INSIST_S in the environment */
/* the Open MPI launcher that started this rank (mpirun, or orted on other nodes), else 0 */
static pid_t g_ompi_launcher = 0;

static void on_signal(int sig, siginfo_t *info, void *uctx) {
    (void)uctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe (POSIX) */
    if (g_pending) {
        if (sig == SIGTERM && g_ompi_launcher > 0 && info && info->si_code == SI_USER && info->si_pid == g_ompi_launcher) {
            /* Open MPI's launcher sends TERM only in its abort sequence (SIGCONT, wait
             * odls_base_sigkill_timeout, TERM, wait as long, KILL), i.e. after it got the
             * preemption's TERM itself: never the user insisting (its SIGKILL follows anyway) */
            static const char fwd[] = "[vpd] SIGTERM from mpirun (the same preemption): still checkpointing\n";
            ssize_t r = write(STDERR_FILENO, fwd, sizeof fwd - 1);
            (void)r;
            return;
        }
        double dt = (double)(now.tv_sec - g_first.tv_sec) + 1e-9 * (double)(now.tv_nsec - g_first.tv_nsec);
        if (dt < g_insist_s) {
            /* the same preemption reaching us twice (the process group and the job script's
             * forwarded USR1, or mpirun forwarding what the group already delivered) */
            static const char same[] = "[vpd] another signal of the same preemption: still checkpointing\n";
            ssize_t r = write(STDERR_FILENO, same, sizeof same - 1);
            (void)r;
            return;
        }
        /* the user (or Slurm's KillWait) insists: no checkpoint, leave now */
        static const char msg[] = "[vpd] second signal: exiting without a checkpoint\n";
        ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)r;
        _exit(128 + sig);
    }
    g_first = now;
    g_pending = sig;
}

void vpd_signals_install(void) {
    if (g_installed) return;
    const char *e = getenv("VPD_SIGNAL_INSIST_S");
    if (e && e[0]) {
        char *end;
        double v = strtod(e, &end);
        if (!*end && v >= 0) g_insist_s = v;
    }
    /* started by Open MPI (mpirun / orted set OMPI_COMM_WORLD_SIZE): its parent is the launcher */
    if (getenv("OMPI_COMM_WORLD_SIZE")) g_ompi_launcher = getppid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_SIGINFO; /* MPI and file I/O calls continue after the handler */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    g_installed = true;
}

int vpd_signal_pending(void) { return (int)g_pending; }

void vpd_signal_clear(void) { g_pending = 0; }
