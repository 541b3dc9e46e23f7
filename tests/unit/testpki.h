/* testpki.h - unit tests' own dev PKI: config/pki/mkpki into a temp dir (static helpers). */
#ifndef IHALA_TESTPKI_H
#define IHALA_TESTPKI_H

#include <stdio.h>
#include <stdlib.h>

/*
 * testpki_make: runs config/pki/mkpki (found from IHALA_ROOT, else the current directory,
 * which tests/run makes the repository root) into a new directory under TMPDIR named after
 * `who`; dir gets its path (dirlen bytes). Returns 0, or -1 when it failed (said on stderr).
 * testpki_path: "dir/name" in one of 8 static buffers used in turn (valid for 7 more calls).
 * testpki_remove: rm -rf dir.
 */
static int
testpki_make(const char *who, char *dir, size_t dirlen)
{
	const char *root = getenv("IHALA_ROOT"), *tmp = getenv("TMPDIR");
	char cmd[2048];

	snprintf(dir, dirlen, "%s/%s.XXXXXX", tmp != NULL && *tmp != '\0' ? tmp : "/tmp", who);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "'%s/config/pki/mkpki' --test-fixtures '%s' >/dev/null",
	         root != NULL && *root != '\0' ? root : ".", dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s: '%s' failed\n", who, cmd);
		return -1;
	}
	return 0;
}

static const char *
testpki_path(const char *dir, const char *name)
{
	static char buf[8][1024];
	static unsigned turn;
	char *b = buf[turn++ % 8];

	snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
	return b;
}

static void
testpki_remove(const char *dir)
{
	char cmd[1100];

	if (dir[0] == '/') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "cannot remove '%s'\n", dir);
		}
	}
}

#endif
