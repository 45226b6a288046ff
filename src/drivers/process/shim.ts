/**
 * The supervisor shim: a few lines of POSIX sh (dash on Debian, ~1 MB per task) that stays the
 * process-group leader of a task, outlives the agent, and records the command's exit status.
 *
 * Protocol (start): the driver spawns `/bin/sh -c SHIM yun-shim PWDSET PWD OOMADJ CMD ARGS…` in a
 * new session with the task's exact environment and working directory, stdout/stderr on the log
 * files, fd 3 a socket to the driver and fd 4 the (empty) exit file, opened by the driver so the shim
 * can record the status whatever user it runs as. The shim blocks on `read <&3` while the driver moves it into
 * the task's cgroups (so the command is born inside them) and protects it from the OOM killer; the
 * driver then writes `go`. The shim runs the command as a *foreground* subshell that execs "$@" (no
 * shell interpretation of the user's argv), waits for it, writes the status to the exit file (fd 4,
 * which the command never sees) and exits with it. The subshell writes `started` on fd 3 once its
 * signal dispositions are back to the defaults, and only then does `start` return: a stop signal
 * sent earlier could be swallowed by the shell's own handler, inherited for a moment after the fork.
 *
 * Why foreground and not `cmd & wait` with signal forwarding: a non-interactive shell starts
 * background commands with SIGINT and SIGQUIT ignored, and a command cannot undo that (dash marks
 * them hard-ignored), so a task could never be stopped with SIGINT. The driver therefore signals the
 * command directly (its pid is recorded in the handle), and the shim merely survives signals meant for
 * the whole group (it catches them with a no-op trap, which exec resets to the default in the command).
 *
 * Status: the shell's `$?` — the exit code, or 128+N when the command was killed by signal N.
 * Variables use the reserved prefix `__yun_shim_` so they never shadow the task's environment.
 */

export const SHIM_VAR_PREFIX = '__yun_shim_';

/** The shim's argv[0] (`$0`), visible in `ps`. */
export const SHIM_NAME = 'yun-shim';
export const EXEC_SHIM_NAME = 'yun-exec';

export const START_SHIM = [
  '__yun_shim_p=$1 __yun_shim_v=$2 __yun_shim_a=$3',
  'shift 3',
  'IFS= read -r __yun_shim_g <&3 || exit 125',
  '[ "$__yun_shim_g" = go ] || exit 125',
  'trap : HUP INT QUIT TERM USR1 USR2 ALRM PIPE WINCH',
  '(',
  '  exec 4>&-',
  '  if [ -n "$__yun_shim_a" ]; then { echo "$__yun_shim_a" > /proc/self/oom_score_adj; } 2>/dev/null; fi',
  '  if [ "$__yun_shim_p" = 1 ]; then PWD=$__yun_shim_v; export PWD; else unset PWD; fi',
  '  { echo started >&3; } 2>/dev/null',
  '  exec 3>&-',
  '  exec "$@"',
  ')',
  '__yun_shim_s=$?',
  '{ echo "$__yun_shim_s" >&4; } 2>/dev/null',
  'exit "$__yun_shim_s"',
].join('\n');

/** For `exec` (health checks): same handshake (the driver puts it into the task's cgroups first), then exec. */
export const EXEC_SHIM = [
  '__yun_shim_p=$1 __yun_shim_v=$2',
  'shift 2',
  'IFS= read -r __yun_shim_g <&3 || exit 125',
  '[ "$__yun_shim_g" = go ] || exit 125',
  'exec 3<&-',
  'if [ "$__yun_shim_p" = 1 ]; then PWD=$__yun_shim_v; export PWD; else unset PWD; fi',
  'exec "$@"',
].join('\n');

/** Exit status the shim uses when the handshake failed (the command never ran). */
export const SHIM_HANDSHAKE_FAILED = 125;
