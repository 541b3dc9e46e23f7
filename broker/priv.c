/* priv.c - switch from root to the configured user: groups, gid, uid, then check they stuck. */
#define _GNU_SOURCE
#include "priv.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/types.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "nodump.h"

static int
stuck(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[2];
	int n;

	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
		return 0;
	}
	if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid) {
		return 0;
	}
	n = getgroups(2, groups);
	if (n < 0 || n > 1 || (n == 1 && groups[0] != gid)) {
		return 0;
	}
	/* No way back: these must fail for an unprivileged uid. */
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)) {
		return 0;
	}
	return 1;
}

int
priv_drop(const char *user)
{
	struct passwd *pw;
	uid_t uid;
	gid_t gid;

	if (user == NULL) {
		return 0;
	}
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		log_warnx("cannot switch to user '%s': no such user on this system", user);
		return IHALA_ECONFIG;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (geteuid() != 0) {
		if (geteuid() == uid && getuid() == uid) {
			log_info("already running as user '%s' (uid %u)", user, (unsigned)uid);
			return 0;
		}
		log_warnx("cannot switch to user '%s': not started as root (uid %u); start as "
		          "root or as '%s', or unset 'user'",
		          user, (unsigned)geteuid(), user);
		return IHALA_ECONFIG;
	}
	if (setgroups(1, &gid) != 0) {
		log_warn("setgroups for user '%s'", user);
		return IHALA_EINTERNAL;
	}
	if (setresgid(gid, gid, gid) != 0) {
		log_warn("setresgid(%u) for user '%s'", (unsigned)gid, user);
		return IHALA_EINTERNAL;
	}
	if (setresuid(uid, uid, uid) != 0) {
		log_warn("setresuid(%u) for user '%s'", (unsigned)uid, user);
		return IHALA_EINTERNAL;
	}
	if (!stuck(uid, gid)) {
		log_security("switch to user '%s' did not stick (uid %u gid %u wanted)", user,
		             (unsigned)uid, (unsigned)gid);
		return IHALA_EINTERNAL;
	}
	/* Changing uids resets the dumpable mark to fs.suid_dumpable, which may be 1 or 2. */
	(void)nodump_init(0);
	log_info("running as user '%s' (uid %u, gid %u)", user, (unsigned)uid, (unsigned)gid);
	return 0;
}
