/* Preemption signals (include/vpd/signals.h). The handler is async-signal-safe: it stores
 * the signal number in a sig_atomic_t and, on a second signal, calls _exit. Everything
 * else (agreeing across ranks, checkpointing) happens in the run loop. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "vpd/signals.h"

static volatile sig_atomic_t g_pending = 0;
static bool g_installed = false;

static void on_signal(int sig) {
    if (g_pending) {
        /* the user (or Slurm's KillWait) insists: no checkpoint, leave now */
        static const char msg[] = "[vpd] second signal: exiting without a checkpoint\n";
        ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)r;
        _exit(128 + sig);
    }
    g_pending = sig;
}

void vpd_signals_install(void) {
    if (g_installed) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* MPI and file I/O calls continue after the handler */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    g_installed = true;
}

int vpd_signal_pending(void) { return (int)g_pending; }

void vpd_signal_clear(void) { g_pending = 0; }
