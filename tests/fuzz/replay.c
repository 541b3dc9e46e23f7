/* replay.c - main() for a fuzz target without libFuzzer: runs each input file once (gcc builds). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/*
 * build/tests/fuzz/fuzz_NAME [FILE|DIR]...
 *
 * Feeds every FILE, and every regular file in every DIR (sorted, not recursive), to
 * LLVMFuzzerTestOneInput once, as libFuzzer would replay a crash input. Before each input it
 * prints "# input PATH" and after it "ok PATH", both flushed, so a caller that sees the
 * process die knows which input killed it. Exit 0 when every input ran, 1 when one could not
 * be read, 2 on usage errors; an input that breaks an invariant aborts the process.
 */

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int
run_file(const char *path)
{
	FILE *fp;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	fp = fopen(path, "rb");
	if (fp == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *nb;

			cap = cap == 0 ? 4096 : cap * 2;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				fprintf(stderr, "replay: %s: out of memory\n", path);
				free(buf);
				fclose(fp);
				return 1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, fp);
		if (n == 0) {
			break;
		}
		len += n;
	}
	if (ferror(fp)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		free(buf);
		fclose(fp);
		return 1;
	}
	fclose(fp);
	printf("# input %s\n", path);
	fflush(stdout);
	/* an exact-size copy, so ASan sees reads past the input's end */
	{
		uint8_t *exact = malloc(len != 0 ? len : 1);

		if (exact == NULL) {
			free(buf);
			return 1;
		}
		if (len != 0) {
			memcpy(exact, buf, len);
		}
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	printf("ok %s\n", path);
	fflush(stdout);
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
run_dir(const char *dir)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	int rc = 0;

	d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		char *p;
		struct stat st;

		if (de->d_name[0] == '.') {
			continue;
		}
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			rc = 1;
			break;
		}
		if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (n == cap) {
			char **nn;

			cap = cap == 0 ? 64 : cap * 2;
			nn = realloc(names, cap * sizeof(*names));
			if (nn == NULL) {
				free(p);
				rc = 1;
				break;
			}
			names = nn;
		}
		names[n++] = p;
	}
	closedir(d);
	if (n > 0) {
		qsort(names, n, sizeof(*names), cmp_names);
	}
	for (i = 0; i < n; i++) {
		if (run_file(names[i]) != 0) {
			rc = 1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	int i, rc = 0;
	struct stat st;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize != NULL) {
		LLVMFuzzerInitialize(&argc, &argv);
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			rc |= run_dir(argv[i]);
		} else {
			rc |= run_file(argv[i]);
		}
	}
	return rc;
}
