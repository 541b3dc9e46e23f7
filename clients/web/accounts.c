/* accounts.c - `ihala web`'s clerk accounts file: parse, write, argon2id hash and verify. */
#include "accounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <argon2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hex.h"

/* OWASP's argon2id choice for a login (19 MiB, 2 passes, 1 lane): a guess costs the same. */
#define HASH_T 2
#define HASH_M 19456
#define HASH_P 1
#define SALT_LEN 16
#define HASH_LEN 32
/* A line of the file: a name, a clerk id, an encoded hash, and room to spare. */
#define LINE_MAX_ 512
#define HEADER "# ihala web users v1: NAME CLERK_ID ARGON2ID_HASH\n"
#define HASH_PREFIX "$argon2id$"

int
accounts_name_valid(const char *name)
{
	size_t n = strlen(name), i;

	if (n == 0 || n > ACCOUNTS_NAME_MAX) {
		return 0;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
			return 0;
		}
	}
	return 1;
}

void
accounts_release(struct accounts *a)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		free(a->v[i].hash);
	}
	free(a->v);
	a->v = NULL;
	a->n = 0;
}

struct account *
accounts_find(const struct accounts *a, const char *name)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		if (strcmp(a->v[i].name, name) == 0) {
			return &a->v[i];
		}
	}
	return NULL;
}

struct account *
accounts_find_clerk(const struct accounts *a, const char *clerk_id)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		if (strcmp(a->v[i].clerk_id, clerk_id) == 0) {
			return &a->v[i];
		}
	}
	return NULL;
}

void
accounts_stamp(const struct account *acc, char *stamp)
{
	unsigned char md[32];
	unsigned int n = 0;
	size_t i;

	if (EVP_Digest(acc->hash, strlen(acc->hash), md, &n, EVP_sha256(), NULL) != 1 ||
	    n != sizeof(md)) {
		/* no digest: a stamp no session has, so none survives by mistake */
		memset(md, 0, sizeof(md));
	}
	for (i = 0; i < sizeof(md); i++) {
		snprintf(stamp + 2 * i, 3, "%02x", md[i]);
	}
}

static int
clerk_taken(const struct accounts *a, const char *clerk_id)
{
	return accounts_find_clerk(a, clerk_id) != NULL;
}

/* Append an account (hash taken). 0, or -1 (out of memory: hash freed). */
static int
push(struct accounts *a, const char *name, const char *clerk_id, char *hash)
{
	struct account *nv;

	if ((nv = realloc(a->v, (a->n + 1) * sizeof(*nv))) == NULL) {
		free(hash);
		return -1;
	}
	a->v = nv;
	memset(&a->v[a->n], 0, sizeof(a->v[a->n]));
	snprintf(a->v[a->n].name, sizeof(a->v[a->n].name), "%s", name);
	snprintf(a->v[a->n].clerk_id, sizeof(a->v[a->n].clerk_id), "%s", clerk_id);
	a->v[a->n].hash = hash;
	a->n++;
	return 0;
}

/* One line "NAME CLERK_ID HASH" (no line end). 0, or -1 with why. */
static int
parse_line(struct accounts *a, char *line, char *why, size_t whylen)
{
	char *name = line, *clerk, *hash, *sp;
	char *h;

	if ((sp = strchr(name, ' ')) == NULL) {
		snprintf(why, whylen, "expected NAME CLERK_ID HASH");
		return -1;
	}
	*sp = '\0';
	clerk = sp + 1;
	if ((sp = strchr(clerk, ' ')) == NULL) {
		snprintf(why, whylen, "expected NAME CLERK_ID HASH");
		return -1;
	}
	*sp = '\0';
	hash = sp + 1;
	if (!accounts_name_valid(name)) {
		snprintf(why, whylen, "the name is not %s", ACCOUNTS_NAME_RULE);
		return -1;
	}
	if (!id_clerk_valid(clerk)) {
		snprintf(why, whylen, "the clerk id of '%.32s' is not %s", name, ID_CLERK_RULE);
		return -1;
	}
	if (strncmp(hash, HASH_PREFIX, strlen(HASH_PREFIX)) != 0 || strchr(hash, ' ') != NULL) {
		snprintf(why, whylen, "the hash of '%.32s' is not an argon2id encoded hash", name);
		return -1;
	}
	if (accounts_find(a, name) != NULL) {
		snprintf(why, whylen, "'%.32s' is there twice", name);
		return -1;
	}
	if (clerk_taken(a, clerk)) {
		snprintf(why, whylen, "the clerk id '%.32s' is there twice", clerk);
		return -1;
	}
	if (a->n >= ACCOUNTS_MAX) {
		snprintf(why, whylen, "more than %d accounts", ACCOUNTS_MAX);
		return -1;
	}
	if ((h = strdup(hash)) == NULL || push(a, name, clerk, h) != 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

int
accounts_load(const char *path, struct accounts *a, char *why, size_t whylen)
{
	char line[LINE_MAX_ + 2], lwhy[256];
	struct stat st;
	FILE *fp;
	int lineno = 0, rc = 0;

	memset(a, 0, sizeof(*a));
	if ((fp = fopen(path, "re")) == NULL) {
		if (errno == ENOENT) {
			return 0;
		}
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a regular file", path);
		fclose(fp);
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		/* the hashes are guessable offline: as secret as a private key */
		snprintf(why, whylen,
		         "%s: mode %03o is open to group or others (chmod 600 it: it holds the "
		         "clerks' password hashes)",
		         path, (unsigned)(st.st_mode & 0777));
		fclose(fp);
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t n = strlen(line);

		lineno++;
		if (n > 0 && line[n - 1] == '\n') {
			line[--n] = '\0';
		} else if (!feof(fp)) {
			snprintf(why, whylen, "%s:%d: line longer than %d bytes", path, lineno,
			         LINE_MAX_);
			rc = -1;
			break;
		}
		if (n == 0 || line[0] == '#') {
			continue;
		}
		if (parse_line(a, line, lwhy, sizeof(lwhy)) != 0) {
			snprintf(why, whylen, "%s:%d: %s", path, lineno, lwhy);
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(fp)) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(fp);
	if (rc != 0) {
		accounts_release(a);
	}
	return rc;
}

int
accounts_save(const char *path, const struct accounts *a, char *why, size_t whylen)
{
	char tmp[4096];
	FILE *fp = NULL;
	size_t i;
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(why, whylen, "%s: path too long", path);
		return -1;
	}
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
	    (fp = fdopen(fd, "w")) == NULL) {
		snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	fputs(HEADER, fp);
	for (i = 0; i < a->n; i++) {
		fprintf(fp, "%s %s %s\n", a->v[i].name, a->v[i].clerk_id, a->v[i].hash);
	}
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
		fclose(fp);
		unlink(tmp);
		return -1;
	}
	if (fclose(fp) != 0 || rename(tmp, path) != 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* A new encoded argon2id hash of pw (malloc'd), or NULL. */
static char *
hash_new(const char *pw, size_t pwlen)
{
	unsigned char salt[SALT_LEN];
	size_t elen = argon2_encodedlen(HASH_T, HASH_M, HASH_P, SALT_LEN, HASH_LEN, Argon2_id);
	char *enc;

	if (RAND_bytes(salt, sizeof(salt)) != 1 || (enc = malloc(elen)) == NULL) {
		return NULL;
	}
	if (argon2id_hash_encoded(HASH_T, HASH_M, HASH_P, pw, pwlen, salt, sizeof(salt), HASH_LEN,
	                          enc, elen) != ARGON2_OK) {
		free(enc);
		return NULL;
	}
	return enc;
}

int
accounts_set(struct accounts *a, const char *name, const char *pw, size_t pwlen, int create,
             char *why, size_t whylen)
{
	struct account *acc = accounts_find(a, name);
	unsigned char raw[8];
	char clerk[ID_CLERK_MAX + 1], hex[2 * sizeof(raw) + 1];
	char *hash;

	if (!accounts_name_valid(name)) {
		snprintf(why, whylen, "invalid name '%s' (%s)", name, ACCOUNTS_NAME_RULE);
		return -1;
	}
	if (create && acc != NULL) {
		snprintf(why, whylen, "'%s' exists already (web-user passwd changes its password)",
		         name);
		return -1;
	}
	if (!create && acc == NULL) {
		snprintf(why, whylen, "there is no account '%s'", name);
		return -1;
	}
	if (pwlen < ACCOUNTS_PASSWORD_MIN || pwlen > ACCOUNTS_PASSWORD_MAX ||
	    memchr(pw, '\0', pwlen) != NULL) {
		snprintf(why, whylen, "the password must be %d..%d bytes (no NUL)",
		         ACCOUNTS_PASSWORD_MIN, ACCOUNTS_PASSWORD_MAX);
		return -1;
	}
	if (create && a->n >= ACCOUNTS_MAX) {
		snprintf(why, whylen, "there are %d accounts already", ACCOUNTS_MAX);
		return -1;
	}
	if ((hash = hash_new(pw, pwlen)) == NULL) {
		snprintf(why, whylen, "the password could not be hashed (argon2id)");
		return -1;
	}
	if (!create) {
		free(acc->hash);
		acc->hash = hash;
		return 0;
	}
	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			free(hash);
			snprintf(why, whylen, "no randomness for a clerk id");
			return -1;
		}
		hex_encode(raw, sizeof(raw), hex);
		snprintf(clerk, sizeof(clerk), "c-%s", hex);
	} while (clerk_taken(a, clerk));
	if (push(a, name, clerk, hash) != 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

int
accounts_remove(struct accounts *a, const char *name)
{
	struct account *acc = accounts_find(a, name);
	size_t i;

	if (acc == NULL) {
		return -1;
	}
	i = (size_t)(acc - a->v);
	free(acc->hash);
	memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(a->v[0]));
	a->n--;
	return 0;
}

int
accounts_verify(const struct accounts *a, const char *name, const char *pw, size_t pwlen,
                char *clerk_id)
{
	const struct account *acc = accounts_find(a, name);
	int ok;

	if (a->n == 0 || pwlen > ACCOUNTS_PASSWORD_MAX) {
		return 0;
	}
	if (acc == NULL) {
		/* the same work as for a real name, the answer ignored */
		(void)argon2id_verify(a->v[0].hash, pw, pwlen);
		return 0;
	}
	ok = argon2id_verify(acc->hash, pw, pwlen) == ARGON2_OK;
	if (ok) {
		snprintf(clerk_id, ID_CLERK_MAX + 1, "%s", acc->clerk_id);
	}
	return ok;
}
