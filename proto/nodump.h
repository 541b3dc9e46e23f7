/* nodump.h - keep a process's memory (survivors' data, keys) out of core dumps and debuggers. */
#ifndef IHALA_NODUMP_H
#define IHALA_NODUMP_H

/* Flags for nodump_init(). */
#define NODUMP_LIMIT_CORE 1 /* also set RLIMIT_CORE to 0, which children inherit */

/*
 * Marks the calling process not dumpable (prctl PR_SET_DUMPABLE 0): no core file is written
 * for it, and a process of the same user can neither ptrace it nor read its /proc/PID/mem.
 * Execve resets the mark, so programs started later are unaffected. With NODUMP_LIMIT_CORE
 * the core size limit is lowered to 0 as well (when it is not 0 already; a unit with
 * LimitCORE=0 and a seccomp filter without setrlimit needs no call). Call it first in main(),
 * before any thread or fork. Returns 0, or IHALA_EIO with the failure logged.
 */
int nodump_init(int flags);

#endif
