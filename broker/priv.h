/* priv.h - dropping root privileges to the configured unprivileged user. */
#ifndef IHALA_PRIV_H
#define IHALA_PRIV_H

/*
 * priv_drop: become `user` for good, once the files and sockets that need root are open.
 *
 *   user NULL                    nothing to do: 0.
 *   started as root (euid 0)     supplementary groups = the user's primary group only,
 *                                then real, effective and saved gid and uid = the user's
 *                                (setgroups, setresgid, setresuid); then checks they stuck
 *                                and that root cannot be regained. 0 on success.
 *   not root, already that user  nothing to do (the service manager switched): 0.
 *   not root, another user       IHALA_ECONFIG (cannot switch; refused rather than running
 *                                as someone the operator did not name).
 *
 * Errors: IHALA_ECONFIG for no such user or the case above, IHALA_EINTERNAL when a system
 * call fails or the switch did not stick (the caller must stop: the process may be half
 * switched). Everything is logged. Call before starting threads other than ZeroMQ's and
 * libmicrohttpd's (glibc applies set*id to every thread of the process).
 */
int priv_drop(const char *user);

#endif
