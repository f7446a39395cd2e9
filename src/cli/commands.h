/* vpd subcommands: each is `int vpd_cmd_<name>(int argc, char **argv)` with argv[0] the
 * subcommand name; returns the process exit status. src/cli/main.c dispatches. */
#ifndef VPD_CLI_COMMANDS_H
#define VPD_CLI_COMMANDS_H

#include "vpd/comm.h" /* ranks and collectives: the CLI calls no MPI function itself */

int vpd_cmd_forward(int argc, char **argv);
int vpd_cmd_pretrain(int argc, char **argv);
int vpd_cmd_decompose(int argc, char **argv);
int vpd_cmd_tokenize(int argc, char **argv);
int vpd_cmd_eval(int argc, char **argv);
int vpd_cmd_compare(int argc, char **argv);
int vpd_cmd_harvest(int argc, char **argv);
int vpd_cmd_report(int argc, char **argv);
int vpd_cmd_info(int argc, char **argv);
int vpd_cmd_sweep(int argc, char **argv);
int vpd_cmd_collect(int argc, char **argv);
int vpd_cmd_parity(int argc, char **argv);
int vpd_cmd_bench(int argc, char **argv);
int vpd_cmd_edit(int argc, char **argv);
int vpd_cmd_generate(int argc, char **argv);
int vpd_cmd_transcoder(int argc, char **argv);
int vpd_cmd_prompt_ci(int argc, char **argv);
int vpd_cmd_attrib(int argc, char **argv);

/* Shared by subcommands: print "vpd <cmd>: <last error>" and return the exit status. */
int vpd_cli_fail(const char *cmd, int status);
/* true if argv contains -h or --help */
int vpd_cli_wants_help(int argc, char **argv);
/* The value of the option argv[*i] (advancing *i), or NULL after printing (rank 0)
 * "vpd CMD: missing value for OPTION". Every command reads option values through it. */
const char *vpd_cli_value(const char *cmd, int argc, char **argv, int *i);
/* Strict integer parsing for every numeric option: the whole of s a base-10 integer in
 * [lo, hi], else 0 after "vpd CMD: OPT wants an integer from lo to hi, got 's'" (rank 0). */
int vpd_cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
/* the same for a real number: finite, the whole of s, in [lo, hi] */
int vpd_cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* strict number with an open or closed lower bound: the whole of s a finite number in [lo, hi]
 * ((lo, hi] when lo_open; lo = -INFINITY / hi = INFINITY: unbounded), else 0 after "vpd CMD: OPT
 * wants a number ..." naming the range (rank 0) */
int vpd_cli_parse_real(const char *cmd, const char *opt, const char *s, double lo, double hi, bool lo_open, double *out);
/* vpd_cli_value + a number in [lo, hi] ((lo, hi] when lo_open; hi may be INFINITY): 1 on
 * success, 0 after "vpd CMD: OPT wants a number ..." (rank 0) */
int vpd_cli_double_opt(const char *cmd, int argc, char **argv, int *i, double lo, double hi, bool lo_open, double *out);
/* vpd_cli_value + vpd_cli_parse_int into an int: 1 on success, 0 after the message */
int vpd_cli_int_opt(const char *cmd, int argc, char **argv, int *i, long lo, long hi, int *out);

#endif
