/* datadir.c - create, check and lock a store's private directory (broker and client stores). */
#include "datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

int
datadir_prepare(const char *what, const char *dir, enum datadir_mode mode)
{
	char path[PATH_MAX];
	struct stat sb;
	size_t n = strlen(dir), i;

	if (n == 0 || n >= sizeof(path)) {
		log_warnx("%s: directory path '%s' is empty or too long", what, dir);
		return IHALA_EINVAL;
	}
	if (mode == DATADIR_CREATE && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_warn("%s: cannot create directory '%s'", what, dir);
		return IHALA_EIO;
	}
	if (mode == DATADIR_PARENTS) {
		/* mkdir -p, 0700 at every level it creates */
		memcpy(path, dir, n + 1);
		for (i = 1; i <= n; i++) {
			if (path[i] != '/' && path[i] != '\0') {
				continue;
			}
			path[i] = '\0';
			if (mkdir(path, 0700) != 0 && errno != EEXIST) {
				log_warn("%s: cannot create directory '%s'", what, path);
				return IHALA_EIO;
			}
			path[i] = dir[i];
		}
	}
	if (stat(dir, &sb) != 0) {
		log_warn("%s: cannot use directory '%s'", what, dir);
		return IHALA_EIO;
	}
	if (!S_ISDIR(sb.st_mode)) {
		log_warnx("%s: '%s' is not a directory", what, dir);
		return IHALA_EIO;
	}
	if (mode != DATADIR_RDONLY && (sb.st_mode & 077) != 0) {
		log_warnx(
		    "%s: directory '%s' is open to group or others (mode %03o); chmod 700 it: "
		    "it holds survivors' data",
		    what, dir, (unsigned)(sb.st_mode & 0777));
	}
	return 0;
}

int
datadir_lock(const char *what, const char *dir, const char *name, int *fd)
{
	return datadir_lock_mode(what, dir, name, 0, fd);
}

int
datadir_lock_mode(const char *what, const char *dir, const char *name, int shared, int *fd)
{
	char path[PATH_MAX];
	int n;

	*fd = -1;
	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		log_warnx("%s: directory path '%s' is too long", what, dir);
		return IHALA_EINVAL;
	}
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0) {
		log_warn("%s: cannot open lock file '%s'", what, path);
		return IHALA_EIO;
	}
	if (flock(*fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
		int busy = errno == EWOULDBLOCK;

		if (!busy) {
			log_warn("%s: cannot lock '%s'", what, path);
		}
		close(*fd);
		*fd = -1;
		return busy ? IHALA_EAGAIN : IHALA_EIO;
	}
	return 0;
}

static int
sync_one(const char *what, const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) != 0) {
		log_warn("%s: cannot flush directory '%s'", what, path);
		if (fd >= 0) {
			close(fd);
		}
		return IHALA_EIO;
	}
	close(fd);
	return 0;
}

int
datadir_sync(const char *what, const char *dir)
{
	char parent[PATH_MAX];
	size_t n = strlen(dir);
	int err;

	if (n >= sizeof(parent)) {
		log_warnx("%s: directory path '%s' is too long", what, dir);
		return IHALA_EINVAL;
	}
	if ((err = sync_one(what, dir)) < 0) {
		return err;
	}
	memcpy(parent, dir, n + 1);
	while (n > 1 && parent[n - 1] == '/') {
		parent[--n] = '\0';
	}
	while (n > 0 && parent[n - 1] != '/') {
		n--;
	}
	if (n == 0) {
		memcpy(parent, ".", 2);
	} else {
		parent[n > 1 ? n - 1 : 1] = '\0';
	}
	return sync_one(what, parent);
}
