/* memscan.c - test tool: does a byte string occur in a live process's memory? (root only) */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Usage: memscan PID HEX
 *
 * Reads every readable mapping of PID (/proc/PID/maps, then /proc/PID/mem) and counts the
 * places where the bytes HEX occur. Prints "found N (B bytes scanned in M mappings)", and
 * ", S skipped" for mappings over 4 GiB: a sanitizer's shadow memory (terabytes reserved,
 * holding no program data), which would take hours to read.
 * Exit: 0 found, 1 not found, 2 usage, 4 cannot read the process (then nothing is claimed).
 */

#define CHUNK (1 << 20)
#define MAP_MAX (4ULL << 30)

static int
unhex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s), i;

	if (n == 0 || n % 2 != 0 || n / 2 > cap) {
		return -1;
	}
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			return -1;
		}
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

int
main(int argc, char **argv)
{
	uint8_t needle[256], *buf;
	size_t nlen, keep;
	char path[64], line[512];
	unsigned long long scanned = 0, found = 0, maps = 0, skipped = 0;
	FILE *fp;
	int fd;

	if (argc != 3 || unhex(argv[2], needle, sizeof(needle), &nlen) != 0) {
		fprintf(stderr, "usage: memscan PID HEX\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%s/maps", argv[1]);
	if ((fp = fopen(path, "re")) == NULL) {
		fprintf(stderr, "memscan: %s: %s\n", path, strerror(errno));
		return 4;
	}
	snprintf(path, sizeof(path), "/proc/%s/mem", argv[1]);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "memscan: %s: %s\n", path, strerror(errno));
		fclose(fp);
		return 4;
	}
	keep = nlen - 1;
	if ((buf = malloc(CHUNK + keep)) == NULL) {
		return 4;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		unsigned long long lo, hi, off;
		char perms[8];
		size_t have = 0;

		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r') {
			continue;
		}
		if (hi - lo > MAP_MAX) {
			skipped++;
			continue;
		}
		maps++;
		for (off = lo; off < hi;) {
			size_t want = hi - off < CHUNK ? (size_t)(hi - off) : CHUNK;
			ssize_t n = pread(fd, buf + have, want, (off_t)off);
			uint8_t *p, *end;

			if (n <= 0) {
				break; /* [vvar] and the like: not readable this way */
			}
			scanned += (unsigned long long)n;
			end = buf + have + (size_t)n;
			for (p = buf; (p = memmem(p, (size_t)(end - p), needle, nlen)) != NULL;
			     p++) {
				found++;
			}
			/* The last nlen-1 bytes may start a match that ends in the next chunk. */
			have = (size_t)(end - buf) < keep ? (size_t)(end - buf) : keep;
			memmove(buf, end - have, have);
			off += (unsigned long long)n;
		}
	}
	fclose(fp);
	close(fd);
	free(buf);
	if (scanned == 0) {
		fprintf(stderr, "memscan: nothing of process %s could be read\n", argv[1]);
		return 4;
	}
	printf("found %llu (%llu bytes scanned in %llu mappings", found, scanned, maps);
	if (skipped > 0) {
		printf(", %llu over 4 GiB skipped", skipped);
	}
	printf(")\n");
	return found > 0 ? 0 : 1;
}
