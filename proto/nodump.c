/* nodump.c - keep a process's memory out of core dumps and debuggers (prctl, RLIMIT_CORE). */
#include "nodump.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include "error.h"
#include "log.h"

int
nodump_init(int flags)
{
	struct rlimit rl;
	int err = 0;

	if ((flags & NODUMP_LIMIT_CORE) != 0 && getrlimit(RLIMIT_CORE, &rl) == 0 &&
	    rl.rlim_cur != 0) {
		rl.rlim_cur = 0;
		if (setrlimit(RLIMIT_CORE, &rl) != 0) {
			log_warn("cannot set the core file size limit to 0");
			err = IHALA_EIO;
		}
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		log_warn("cannot mark the process not dumpable (prctl PR_SET_DUMPABLE)");
		err = IHALA_EIO;
	}
	return err;
}
