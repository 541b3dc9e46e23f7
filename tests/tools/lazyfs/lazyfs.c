/*
 * lazyfs.c - a FUSE file system that forgets what was not synced: power cuts for the tests.
 *
 *   lazyfs [-f] [-o FUSE_OPTION] BACKING MOUNTPOINT
 *
 * The model is LazyFS's. MOUNTPOINT shows BACKING, but nothing written through the mount reaches
 * BACKING until it is synced: file data stay in this process's memory (a page cache of 4 KiB
 * pages) until the file is fsynced or fdatasynced, or written through an O_SYNC/O_DSYNC handle;
 * creates, mkdirs, unlinks, rmdirs, renames and links stay in memory until their directory is
 * fsynced. Reads see everything, synced or not. So BACKING only ever holds what a disk that
 * honours flushes would hold, and a power cut is "forget the memory":
 *
 *   - data of a file that was never fsynced, or written after its last fsync: gone;
 *   - a name created (or removed, or renamed) but whose directory was not fsynced since: the
 *     change is undone (a file fsynced under a name that never became durable is an orphan and is
 *     gone too: this is stricter than ext4, which commits the name with the data, and is what
 *     POSIX promises);
 *   - a directory rename is durable once the target directory is fsynced (the old name goes with
 *     it); attributes other than the size and the mode at creation are never made durable.
 *
 * Control: the file MOUNTPOINT/.lazyfs (not listed by readdir). Write one command per line;
 * the write returns once it is done (EINVAL for an unknown command). Reading it prints counters.
 *
 *   cut            power cut: drop every unsynced write and namespace change, and serve BACKING
 *                  afresh. Open handles die (EIO); the kernel's caches are not ours to drop, so
 *                  after a cut a test unmounts and mounts again before it looks (a new lazyfs over
 *                  the same BACKING serves exactly what a cut leaves).
 *   cut tear [N]   the same, but first the last page written and not synced is torn: its first N
 *                  bytes (default 2048) reach the disk over the old ones, the rest does not. Only
 *                  a page inside the durable size of a durable file can tear.
 *   eio            the next fsync, fdatasync or O_DSYNC write fails with EIO; what it covered is
 *                  not written, and is marked clean like Linux does (still read back, never
 *                  written by a later fsync: retrying the fsync "succeeds" and loses the data).
 *   eio off        disarm.
 *   enospc N       the file system holds N bytes of file data (the sum of file sizes): a write
 *                  or truncate that would go past fails with ENOSPC. "enospc off" lifts it.
 *   sync           write everything to BACKING (a clean shutdown).
 *
 * Mounting: runs single-threaded; with -f stays in the foreground. Unmount with fusermount3 -u
 * or umount; unmounting without "sync" is itself a power cut. Orphans left in BACKING by an
 * earlier run (.lazyfs-orphan-*) are removed at mount, as fsck would.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define CTL_NAME ".lazyfs"
#define ORPHAN_PREFIX ".lazyfs-orphan-"

struct page {
	int lost; /* its fsync failed: read back, never written */
	unsigned char d[PG];
};

struct dent {
	char *name;
	struct node *node;
	struct dent *next;
};

/* An inode. Nodes are freed only by a cut (dead ones stay, nlink 0, so pointers never dangle). */
struct node {
	uint64_t id;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime, ctime;
	int nlink; /* names in the visible tree */
	/* Durable entry: the name bname in the backing directory of node bdir (NULL bname: none).
	 */
	struct node *bdir;
	char *bname;
	ino_t bino;
	int bfd; /* files: the backing file, or -1 */
	/* files */
	off_t size; /* as seen */
	off_t bvis; /* bytes of the backing file still seen (a truncate hides the rest) */
	struct page **pages;
	size_t npages;
	/* directories */
	struct dent *kids;
	int dirty;
	struct node *next_all;
};

struct handle {
	struct node *n;
	uint64_t gen;
	int flags;
	int ctl;
};

static struct {
	int root_fd; /* the backing directory */
	struct node *root;
	struct node *all;
	uint64_t next_id;
	uint64_t gen;
	int eio_armed;
	long long limit; /* ENOSPC past this many bytes; -1: none */
	long long used;
	struct node *last; /* the last page written and not synced, for "cut tear" */
	size_t last_pg;
	unsigned long long fsyncs, synced_bytes, cuts, eios;
} fs = {.root_fd = -1, .limit = -1};

static int sync_file(struct node *n);
static int sync_dir(struct node *n);

static int
is_dir(const struct node *n)
{
	return S_ISDIR(n->mode);
}

static struct node *
node_new(mode_t mode)
{
	struct node *n = calloc(1, sizeof(*n));

	if (n == NULL) {
		return NULL;
	}
	n->id = ++fs.next_id;
	n->mode = mode;
	n->uid = getuid();
	n->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->atime = n->ctime = n->mtime;
	n->bfd = -1;
	n->next_all = fs.all;
	fs.all = n;
	return n;
}

static void
free_pages(struct node *n, size_t from)
{
	size_t i;

	for (i = from; i < n->npages; i++) {
		free(n->pages[i]);
		n->pages[i] = NULL;
	}
}

static void
free_all(void)
{
	struct node *n, *next;
	struct dent *d, *dn;

	for (n = fs.all; n != NULL; n = next) {
		next = n->next_all;
		free_pages(n, 0);
		free(n->pages);
		for (d = n->kids; d != NULL; d = dn) {
			dn = d->next;
			free(d->name);
			free(d);
		}
		if (n->bfd >= 0) {
			close(n->bfd);
		}
		free(n->bname);
		free(n);
	}
	fs.all = NULL;
	fs.root = NULL;
	fs.last = NULL;
	fs.used = 0;
}

/* The backing path of n, relative to root_fd ("." for the root). */
static int
bpath(const struct node *n, char *buf, size_t size)
{
	char tmp[PATH_MAX];
	int len;

	if (n == fs.root) {
		len = snprintf(buf, size, ".");
	} else if (n->bname == NULL || n->bdir == NULL || bpath(n->bdir, tmp, sizeof(tmp)) < 0) {
		return -ENOENT;
	} else {
		len = snprintf(buf, size, "%s/%s", tmp, n->bname);
	}
	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

static int
set_bname(struct node *n, struct node *dir, const char *name)
{
	char *copy = strdup(name);

	if (copy == NULL) {
		return -ENOMEM;
	}
	free(n->bname);
	n->bname = copy;
	n->bdir = dir;
	return 0;
}

static int
is_orphan_name(const struct node *n)
{
	return n->bname != NULL && n->bdir == fs.root &&
	       strncmp(n->bname, ORPHAN_PREFIX, strlen(ORPHAN_PREFIX)) == 0;
}

/* Open the backing file of n, if it has one. */
static int
open_backing(struct node *n)
{
	char p[PATH_MAX];
	int err;

	if (n->bfd >= 0 || n->bname == NULL) {
		return 0;
	}
	if ((err = bpath(n, p, sizeof(p))) < 0) {
		return err;
	}
	n->bfd = openat(fs.root_fd, p, O_RDWR | O_CLOEXEC);
	return n->bfd < 0 ? -errno : 0;
}

/* rm -rf NAME in the backing directory dirfd. */
static void
rm_rf(int at, const char *name)
{
	struct dirent *e;
	DIR *d;
	int fd;

	if (unlinkat(at, name, 0) == 0 || (errno != EISDIR && errno != EPERM)) {
		return;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && (d = fdopendir(fd)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
				rm_rf(dirfd(d), e->d_name);
			}
		}
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	unlinkat(at, name, AT_REMOVEDIR);
}

/* ---- the visible tree ---- */

static struct dent *
find_kid(const struct node *dir, const char *name)
{
	struct dent *d;

	for (d = dir->kids; d != NULL; d = d->next) {
		if (strcmp(d->name, name) == 0) {
			return d;
		}
	}
	return NULL;
}

static int
add_kid(struct node *dir, const char *name, struct node *n)
{
	struct dent *d = calloc(1, sizeof(*d));

	if (d == NULL || (d->name = strdup(name)) == NULL) {
		free(d);
		return -ENOMEM;
	}
	d->node = n;
	d->next = dir->kids;
	dir->kids = d;
	n->nlink++;
	return 0;
}

/* Remove the name (not the node); a file with no name left frees its pages. */
static void
del_kid(struct node *dir, const char *name)
{
	struct dent **pp, *d;

	for (pp = &dir->kids; (d = *pp) != NULL; pp = &d->next) {
		if (strcmp(d->name, name) == 0) {
			*pp = d->next;
			if (--d->node->nlink == 0 && !is_dir(d->node)) {
				fs.used -= d->node->size;
			}
			free(d->name);
			free(d);
			return;
		}
	}
}

/* Resolve an absolute path to its node. */
static int
resolve(const char *path, struct node **out)
{
	struct node *n = fs.root;
	const char *s = path;
	char comp[NAME_MAX + 1];

	*out = NULL;
	while (*s == '/') {
		s++;
	}
	while (*s != '\0') {
		size_t len = strcspn(s, "/");
		struct dent *d;

		if (len > NAME_MAX) {
			return -ENAMETOOLONG;
		}
		if (!is_dir(n)) {
			return -ENOTDIR;
		}
		memcpy(comp, s, len);
		comp[len] = '\0';
		if ((d = find_kid(n, comp)) == NULL) {
			return -ENOENT;
		}
		n = d->node;
		s += len;
		while (*s == '/') {
			s++;
		}
	}
	*out = n;
	return 0;
}

/* The directory that holds path's last component, and that component, copied into name. */
static int
resolve_parent(const char *path, struct node **dir, char *name)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	char *slash;
	int err;

	if (len >= sizeof(buf)) {
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/') {
		buf[--len] = '\0';
	}
	if ((slash = strrchr(buf, '/')) == NULL || slash[1] == '\0') {
		return -EBUSY; /* the root */
	}
	if (strlen(slash + 1) > NAME_MAX) {
		return -ENAMETOOLONG;
	}
	strcpy(name, slash + 1);
	slash[1] = '\0';
	if ((err = resolve(buf, dir)) < 0) {
		return err;
	}
	return is_dir(*dir) ? 0 : -ENOTDIR;
}

/* ---- loading BACKING ---- */

static struct node *
find_bino(ino_t ino)
{
	struct node *n;

	for (n = fs.all; n != NULL; n = n->next_all) {
		if (n->bname != NULL && n->bino == ino) {
			return n;
		}
	}
	return NULL;
}

static void
attrs_from(struct node *n, const struct stat *sb)
{
	n->mode = sb->st_mode;
	n->uid = sb->st_uid;
	n->gid = sb->st_gid;
	n->atime = sb->st_atim;
	n->mtime = sb->st_mtim;
	n->ctime = sb->st_ctim;
	n->bino = sb->st_ino;
}

static int
load_dir(struct node *dir, int dfd)
{
	struct dirent *e;
	DIR *d;
	int fd = dup(dfd), err = 0;

	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0) {
			close(fd);
		}
		return -errno;
	}
	rewinddir(d);
	while (err == 0 && (e = readdir(d)) != NULL) {
		struct stat sb;
		struct node *n;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    (dir == fs.root && strcmp(e->d_name, CTL_NAME) == 0)) {
			continue;
		}
		if (dir == fs.root &&
		    strncmp(e->d_name, ORPHAN_PREFIX, strlen(ORPHAN_PREFIX)) == 0) {
			rm_rf(dfd, e->d_name);
			continue;
		}
		if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			continue;
		}
		if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) {
			continue; /* not modelled */
		}
		if (S_ISREG(sb.st_mode) && (n = find_bino(sb.st_ino)) != NULL) {
			err = add_kid(dir, e->d_name, n); /* a hard link */
			continue;
		}
		if ((n = node_new(sb.st_mode)) == NULL || set_bname(n, dir, e->d_name) < 0 ||
		    add_kid(dir, e->d_name, n) < 0) {
			err = -ENOMEM;
			break;
		}
		attrs_from(n, &sb);
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (sub < 0) {
				err = -errno;
				break;
			}
			err = load_dir(n, sub);
			close(sub);
		} else {
			n->size = n->bvis = sb.st_size;
			fs.used += sb.st_size;
		}
	}
	closedir(d);
	return err;
}

static int
load(void)
{
	struct stat sb;

	if (fstat(fs.root_fd, &sb) != 0) {
		return -errno;
	}
	if ((fs.root = node_new(sb.st_mode)) == NULL) {
		return -ENOMEM;
	}
	attrs_from(fs.root, &sb);
	fs.root->nlink = 1;
	return load_dir(fs.root, fs.root_fd);
}

/* ---- file data ---- */

/* The page pg of n as seen now, into buf. */
static void
fill_page(struct node *n, size_t pg, unsigned char *buf)
{
	off_t off = (off_t)pg * PG;

	if (pg < n->npages && n->pages[pg] != NULL) {
		memcpy(buf, n->pages[pg]->d, PG);
		return;
	}
	memset(buf, 0, PG);
	if (off < n->bvis && open_backing(n) == 0 && n->bfd >= 0) {
		size_t want = (size_t)(n->bvis - off < PG ? n->bvis - off : PG);
		ssize_t got = pread(n->bfd, buf, want, off);

		(void)got; /* short: zeros */
	}
}

static struct page *
get_page(struct node *n, size_t pg)
{
	struct page *p;

	if (pg >= n->npages) {
		size_t cap = n->npages ? n->npages : 16;
		struct page **np;

		while (cap <= pg) {
			cap *= 2;
		}
		if ((np = realloc(n->pages, cap * sizeof(*np))) == NULL) {
			return NULL;
		}
		memset(np + n->npages, 0, (cap - n->npages) * sizeof(*np));
		n->pages = np;
		n->npages = cap;
	}
	if (n->pages[pg] == NULL) {
		if ((p = malloc(sizeof(*p))) == NULL) {
			return NULL;
		}
		fill_page(n, pg, p->d);
		p->lost = 0;
		n->pages[pg] = p;
	}
	return n->pages[pg];
}

static size_t
pending_pages(const struct node *n)
{
	size_t i, c = 0;

	for (i = 0; i < n->npages; i++) {
		c += n->pages[i] != NULL && !n->pages[i]->lost;
	}
	return c;
}

static int
do_truncate(struct node *n, off_t size)
{
	size_t pg;

	if (size > n->size && fs.limit >= 0 && n->nlink > 0 &&
	    fs.used + (size - n->size) > fs.limit) {
		return -ENOSPC;
	}
	if (size < n->size) {
		pg = (size_t)((size + PG - 1) / PG);
		if (pg < n->npages) {
			free_pages(n, pg);
		}
		if (size % PG != 0 && (size_t)(size / PG) < n->npages &&
		    n->pages[size / PG] != NULL) {
			memset(n->pages[size / PG]->d + size % PG, 0, PG - (size_t)(size % PG));
		}
		if (n->bvis > size) {
			n->bvis = size;
		}
	}
	if (n->nlink > 0) {
		fs.used += size - n->size;
	}
	n->size = size;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->ctime = n->mtime;
	return 0;
}

/* Give n a durable name if it has none: an orphan in BACKING's root. */
static int
ensure_backing(struct node *n)
{
	char name[64];
	struct stat sb;
	int err;

	if (n == fs.root || n->bname != NULL) {
		return is_dir(n) ? 0 : open_backing(n);
	}
	snprintf(name, sizeof(name), ORPHAN_PREFIX "%llu", (unsigned long long)n->id);
	rm_rf(fs.root_fd, name);
	if (is_dir(n)) {
		if (mkdirat(fs.root_fd, name, n->mode & 07777) != 0 ||
		    fstatat(fs.root_fd, name, &sb, 0) != 0) {
			return -errno;
		}
	} else {
		if (n->bfd >= 0) {
			close(n->bfd); /* an unlinked inode: start afresh */
		}
		n->bfd = openat(fs.root_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		                n->mode & 07777);
		if (n->bfd < 0 || fstat(n->bfd, &sb) != 0) {
			return -errno;
		}
		n->bvis = 0;
	}
	if ((err = set_bname(n, fs.root, name)) < 0) {
		return err;
	}
	n->bino = sb.st_ino;
	return 0;
}

static int
sync_file(struct node *n)
{
	size_t i;
	int err;

	fs.fsyncs++;
	if (fs.eio_armed) {
		fs.eio_armed = 0;
		fs.eios++;
		for (i = 0; i < n->npages; i++) {
			if (n->pages[i] != NULL) {
				n->pages[i]->lost = 1;
			}
		}
		return -EIO;
	}
	if (n->nlink == 0 && n->bname == NULL && n->bfd < 0) {
		return 0; /* unlinked before it was ever durable: nothing can survive */
	}
	if (n->bname == NULL && n->bfd >= 0) {
		/* unlinked and its name gone from BACKING: the inode lives on as long as the fd */
	} else if ((err = ensure_backing(n)) < 0) {
		return err;
	}
	if (ftruncate(n->bfd, n->bvis < n->size ? n->bvis : n->size) != 0 ||
	    ftruncate(n->bfd, n->size) != 0) {
		return -errno;
	}
	for (i = 0; i < n->npages; i++) {
		struct page *p = n->pages[i];
		off_t off = (off_t)i * PG;
		size_t len;

		if (p == NULL || p->lost) {
			continue;
		}
		if (off < n->size) {
			len = (size_t)(n->size - off < PG ? n->size - off : PG);
			if (pwrite(n->bfd, p->d, len, off) != (ssize_t)len) {
				return errno ? -errno : -EIO;
			}
			fs.synced_bytes += len;
		}
		free(p);
		n->pages[i] = NULL;
	}
	if (fsync(n->bfd) != 0) {
		return -errno;
	}
	n->bvis = n->size;
	if (fs.last == n) {
		fs.last = NULL;
	}
	return 0;
}

/* The node whose durable entry is NAME in dir's backing directory. */
static struct node *
claimant(const struct node *dir, const char *name)
{
	struct node *n;

	for (n = fs.all; n != NULL; n = n->next_all) {
		if (n->bname != NULL && n->bdir == dir && strcmp(n->bname, name) == 0) {
			return n;
		}
	}
	return NULL;
}

/* Move n's durable entry to an orphan name (n lives on elsewhere, its old name goes). */
static int
rehome(struct node *n)
{
	char from[PATH_MAX], name[64];
	int err;

	if ((err = bpath(n, from, sizeof(from))) < 0) {
		return err;
	}
	snprintf(name, sizeof(name), ORPHAN_PREFIX "%llu", (unsigned long long)n->id);
	rm_rf(fs.root_fd, name);
	if (is_dir(n) ? renameat(fs.root_fd, from, fs.root_fd, name) != 0
	              : linkat(fs.root_fd, from, fs.root_fd, name, 0) != 0) {
		return -errno;
	}
	if (!is_dir(n) && unlinkat(fs.root_fd, from, 0) != 0) {
		return -errno;
	}
	return set_bname(n, fs.root, name);
}

/* n's durable entry goes away with everything below it, but what still lives elsewhere. */
static int
drop_durable(struct node *n)
{
	char p[PATH_MAX];
	struct node *x;
	int err;

	if (is_dir(n)) {
		for (x = fs.all; x != NULL; x = x->next_all) {
			if (x->bname == NULL || x->bdir != n) {
				continue;
			}
			if ((err = x->nlink > 0 ? rehome(x) : drop_durable(x)) < 0) {
				return err;
			}
		}
	}
	if ((err = bpath(n, p, sizeof(p))) < 0) {
		return err;
	}
	rm_rf(fs.root_fd, p);
	free(n->bname);
	n->bname = NULL;
	n->bdir = NULL;
	return 0;
}

/* Make BACKING's copy of directory n match the visible one, and fsync it. */
static int
sync_dir(struct node *n)
{
	char dp[PATH_MAX], p[PATH_MAX];
	struct dirent *e;
	struct dent *k;
	struct stat sb;
	DIR *d;
	int dfd, err;

	fs.fsyncs++;
	if (fs.eio_armed) {
		fs.eio_armed = 0;
		fs.eios++;
		return -EIO;
	}
	if ((err = ensure_backing(n)) < 0 || (err = bpath(n, dp, sizeof(dp))) < 0) {
		return err;
	}
	if ((dfd = openat(fs.root_fd, dp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		return -errno;
	}
	/* 1. Entries that are no longer seen (or now name another node) go. */
	if ((d = fdopendir(dup(dfd))) == NULL) {
		err = -errno;
		goto out;
	}
	rewinddir(d);
	while ((e = readdir(d)) != NULL) {
		struct node *c;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    (n == fs.root &&
		     strncmp(e->d_name, ORPHAN_PREFIX, strlen(ORPHAN_PREFIX)) == 0)) {
			continue;
		}
		if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			continue;
		}
		k = find_kid(n, e->d_name);
		if (k != NULL && k->node->bname != NULL && k->node->bino == sb.st_ino) {
			continue;
		}
		c = claimant(n, e->d_name);
		if (c != NULL && c->nlink > 0) {
			err = rehome(c);
		} else if (c != NULL) {
			err = drop_durable(c);
		} else {
			rm_rf(dfd, e->d_name);
		}
		if (err < 0) {
			break;
		}
	}
	closedir(d);
	if (err < 0) {
		goto out;
	}
	/* 2. Entries seen and not in BACKING are made. */
	for (k = n->kids; k != NULL; k = k->next) {
		struct node *c = k->node;

		if (fstatat(dfd, k->name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && c->bname != NULL &&
		    c->bino == sb.st_ino) {
			continue;
		}
		if (c->bname != NULL) {
			int orphan = is_orphan_name(c);

			if ((err = bpath(c, p, sizeof(p))) < 0) {
				goto out;
			}
			if (is_dir(c) ? renameat(fs.root_fd, p, dfd, k->name) != 0
			              : linkat(fs.root_fd, p, dfd, k->name, 0) != 0) {
				err = -errno;
				goto out;
			}
			if (!is_dir(c) && orphan) {
				unlinkat(fs.root_fd, p, 0);
			}
		} else if (is_dir(c)) {
			if (mkdirat(dfd, k->name, c->mode & 07777) != 0) {
				err = -errno;
				goto out;
			}
		} else {
			int fd = openat(dfd, k->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			                c->mode & 07777);

			if (fd < 0) {
				err = -errno;
				goto out;
			}
			if (c->bfd >= 0) {
				close(c->bfd);
			}
			c->bfd = fd;
			c->bvis = 0; /* the name is durable, the data not yet */
		}
		if (fstatat(dfd, k->name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			err = -errno;
			goto out;
		}
		c->bino = sb.st_ino;
		if ((err = set_bname(c, n, k->name)) < 0) {
			goto out;
		}
	}
	if (fsync(dfd) != 0) {
		err = -errno;
		goto out;
	}
	n->dirty = 0;
out:
	close(dfd);
	return err;
}

/* Everything to BACKING, parents before children. */
static int
sync_tree(struct node *dir)
{
	struct dent *k;
	int err;

	if ((err = sync_dir(dir)) < 0) {
		return err;
	}
	for (k = dir->kids; k != NULL; k = k->next) {
		err = is_dir(k->node) ? sync_tree(k->node) : sync_file(k->node);
		if (err < 0) {
			return err;
		}
	}
	return 0;
}

static int
power_cut(long tear)
{
	struct node *n = fs.last;

	if (tear > 0 && n != NULL && n->bname != NULL && open_backing(n) == 0 &&
	    fs.last_pg < n->npages && n->pages[fs.last_pg] != NULL && !n->pages[fs.last_pg]->lost) {
		off_t off = (off_t)fs.last_pg * PG;
		struct stat sb;
		size_t len = (size_t)(tear < PG ? tear : PG);

		if (fstat(n->bfd, &sb) == 0 && off + (off_t)len <= sb.st_size) {
			if (pwrite(n->bfd, n->pages[fs.last_pg]->d, len, off) != (ssize_t)len ||
			    fsync(n->bfd) != 0) {
				return -errno;
			}
		}
	}
	free_all();
	fs.gen++;
	fs.cuts++;
	fs.eio_armed = 0;
	return load();
}

/* ---- the control file ---- */

static int
ctl_command(char *line)
{
	char *arg = line + strcspn(line, " \t");
	char *end;
	long long v;

	if (*arg != '\0') {
		*arg++ = '\0';
		arg += strspn(arg, " \t");
	}
	if (strcmp(line, "cut") == 0) {
		if (*arg == '\0') {
			return power_cut(0);
		}
		if (strncmp(arg, "tear", 4) != 0) {
			return -EINVAL;
		}
		arg += 4;
		arg += strspn(arg, " \t");
		if (*arg == '\0') {
			return power_cut(PG / 2);
		}
		v = strtoll(arg, &end, 10);
		return *end != '\0' || v <= 0 || v > PG ? -EINVAL : power_cut((long)v);
	}
	if (strcmp(line, "eio") == 0) {
		if (*arg != '\0' && strcmp(arg, "off") != 0) {
			return -EINVAL;
		}
		fs.eio_armed = *arg == '\0';
		return 0;
	}
	if (strcmp(line, "enospc") == 0) {
		if (strcmp(arg, "off") == 0) {
			fs.limit = -1;
			return 0;
		}
		v = strtoll(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || v < 0) {
			return -EINVAL;
		}
		fs.limit = v;
		return 0;
	}
	if (strcmp(line, "sync") == 0 && *arg == '\0') {
		return sync_tree(fs.root);
	}
	return -EINVAL;
}

static int
ctl_write(const char *buf, size_t size)
{
	char cmd[256], *line, *save = NULL;
	int err;

	if (size >= sizeof(cmd)) {
		return -EINVAL;
	}
	memcpy(cmd, buf, size);
	cmd[size] = '\0';
	for (line = strtok_r(cmd, "\r\n", &save); line != NULL;
	     line = strtok_r(NULL, "\r\n", &save)) {
		if (*line == '\0') {
			continue;
		}
		if ((err = ctl_command(line)) < 0) {
			return err;
		}
	}
	return (int)size;
}

static int
ctl_read(char *buf, size_t size, off_t off)
{
	char text[512];
	struct node *n;
	size_t pend = 0, dirs = 0;
	int len;

	for (n = fs.all; n != NULL; n = n->next_all) {
		pend += pending_pages(n);
		dirs += is_dir(n) && n->dirty;
	}
	len = snprintf(text, sizeof(text),
	               "cuts %llu\npending_pages %zu\npending_dirs %zu\nfsyncs %llu\n"
	               "synced_bytes %llu\neio_armed %d\neio_failed %llu\nlimit %lld\nused %lld\n",
	               fs.cuts, pend, dirs, fs.fsyncs, fs.synced_bytes, fs.eio_armed, fs.eios,
	               fs.limit, fs.used);
	if (len < 0 || off >= len) {
		return 0;
	}
	if ((size_t)(len - off) < size) {
		size = (size_t)(len - off);
	}
	memcpy(buf, text + off, size);
	return (int)size;
}

static int
is_ctl(const char *path)
{
	return path != NULL && strcmp(path, "/" CTL_NAME) == 0;
}

/* ---- FUSE operations ---- */

static struct node *
fh_node(struct fuse_file_info *fi, int *err)
{
	struct handle *h = fi != NULL ? (struct handle *)(uintptr_t)fi->fh : NULL;

	if (h == NULL || h->ctl) {
		*err = -EBADF;
		return NULL;
	}
	if (h->gen != fs.gen) {
		*err = -EIO; /* opened before a power cut */
		return NULL;
	}
	return h->n;
}

/* The node for an operation: the handle's when there is one, else the path's. */
static struct node *
op_node(const char *path, struct fuse_file_info *fi, int *err)
{
	struct node *n = NULL;

	*err = 0;
	if (fi != NULL && fi->fh != 0) {
		return fh_node(fi, err);
	}
	if (path == NULL) {
		*err = -EBADF;
		return NULL;
	}
	*err = resolve(path, &n);
	return n;
}

static void *
lz_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	cfg->use_ino = 0;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 1;
	cfg->direct_io = 0;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	return NULL;
}

static int
lz_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	memset(st, 0, sizeof(*st));
	if (is_ctl(path)) {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		return 0;
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	st->st_ino = n->id;
	st->st_mode = n->mode;
	st->st_nlink = is_dir(n) ? 2 : (nlink_t)n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_size = is_dir(n) ? PG : n->size;
	st->st_blksize = PG;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
	return 0;
}

static int
lz_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
           struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct node *n;
	struct dent *k;
	int err;

	(void)off;
	(void)flags;
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	if (!is_dir(n)) {
		return -ENOTDIR;
	}
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	for (k = n->kids; k != NULL; k = k->next) {
		if (filler(buf, k->name, NULL, 0, 0) != 0) {
			break;
		}
	}
	return 0;
}

static int
new_handle(struct fuse_file_info *fi, struct node *n, int ctl)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (h == NULL) {
		return -ENOMEM;
	}
	h->n = n;
	h->gen = fs.gen;
	h->flags = fi->flags;
	h->ctl = ctl;
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 0;
	if (ctl) {
		fi->direct_io = 1;
	}
	return 0;
}

static int
lz_open(const char *path, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if (is_ctl(path)) {
		return new_handle(fi, NULL, 1);
	}
	if ((err = resolve(path, &n)) < 0) {
		return err;
	}
	if (is_dir(n)) {
		return -EISDIR;
	}
	if ((fi->flags & O_TRUNC) && (err = do_truncate(n, 0)) < 0) {
		return err;
	}
	return new_handle(fi, n, 0);
}

static int
lz_opendir(const char *path, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if ((err = resolve(path, &n)) < 0) {
		return err;
	}
	return is_dir(n) ? new_handle(fi, n, 0) : -ENOTDIR;
}

static int
lz_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	free((void *)(uintptr_t)fi->fh);
	fi->fh = 0;
	return 0;
}

static int
make_node(const char *path, mode_t mode, struct node **out)
{
	char name[NAME_MAX + 1];
	struct node *dir, *n;
	int err;

	if ((err = resolve_parent(path, &dir, name)) < 0) {
		return err;
	}
	if (!is_dir(dir)) {
		return -ENOTDIR;
	}
	if (find_kid(dir, name) != NULL || (dir == fs.root && strcmp(name, CTL_NAME) == 0)) {
		return -EEXIST;
	}
	if ((n = node_new(mode)) == NULL) {
		return -ENOMEM;
	}
	if (fuse_get_context() != NULL) {
		n->uid = fuse_get_context()->uid;
		n->gid = fuse_get_context()->gid;
	}
	if ((err = add_kid(dir, name, n)) < 0) {
		n->nlink = 0;
		return err;
	}
	dir->dirty = 1;
	clock_gettime(CLOCK_REALTIME, &dir->mtime);
	*out = n;
	return 0;
}

static int
lz_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if ((err = make_node(path, S_IFREG | (mode & 07777), &n)) < 0) {
		return err;
	}
	return new_handle(fi, n, 0);
}

static int
lz_mknod(const char *path, mode_t mode, dev_t dev)
{
	struct node *n;

	(void)dev;
	if (!S_ISREG(mode)) {
		return -EPERM;
	}
	return make_node(path, mode, &n);
}

static int
lz_mkdir(const char *path, mode_t mode)
{
	struct node *n;

	return make_node(path, S_IFDIR | (mode & 07777), &n);
}

static int
remove_name(const char *path, int dir_wanted)
{
	char name[NAME_MAX + 1];
	struct node *dir;
	struct dent *k;
	int err;

	if ((err = resolve_parent(path, &dir, name)) < 0) {
		return err;
	}
	if ((k = find_kid(dir, name)) == NULL) {
		return -ENOENT;
	}
	if (dir_wanted && !is_dir(k->node)) {
		return -ENOTDIR;
	}
	if (!dir_wanted && is_dir(k->node)) {
		return -EISDIR;
	}
	if (dir_wanted && k->node->kids != NULL) {
		return -ENOTEMPTY;
	}
	del_kid(dir, name);
	dir->dirty = 1;
	clock_gettime(CLOCK_REALTIME, &dir->mtime);
	return 0;
}

static int
lz_unlink(const char *path)
{
	return is_ctl(path) ? -EPERM : remove_name(path, 0);
}

static int
lz_rmdir(const char *path)
{
	return remove_name(path, 1);
}

static int
is_below(const struct node *dir, const struct node *n)
{
	struct dent *k;

	if (dir == n) {
		return 1;
	}
	for (k = dir->kids; k != NULL; k = k->next) {
		if (is_dir(k->node) && is_below(k->node, n)) {
			return 1;
		}
	}
	return 0;
}

static int
lz_rename(const char *from, const char *to, unsigned int flags)
{
	char fname[NAME_MAX + 1], tname[NAME_MAX + 1];
	struct node *fdir, *tdir, *n;
	struct dent *fk, *tk;
	int err;

	if (flags & ~RENAME_NOREPLACE) {
		return -EINVAL;
	}
	if (is_ctl(from) || is_ctl(to)) {
		return -EPERM;
	}
	if ((err = resolve_parent(from, &fdir, fname)) < 0 ||
	    (err = resolve_parent(to, &tdir, tname)) < 0) {
		return err;
	}
	if ((fk = find_kid(fdir, fname)) == NULL) {
		return -ENOENT;
	}
	n = fk->node;
	if (!is_dir(tdir)) {
		return -ENOTDIR;
	}
	if (is_dir(n) && is_below(n, tdir)) {
		return -EINVAL;
	}
	if ((tk = find_kid(tdir, tname)) != NULL) {
		if (tk->node == n) {
			return 0;
		}
		if (flags & RENAME_NOREPLACE) {
			return -EEXIST;
		}
		if (is_dir(tk->node) != is_dir(n)) {
			return is_dir(n) ? -ENOTDIR : -EISDIR;
		}
		if (is_dir(tk->node) && tk->node->kids != NULL) {
			return -ENOTEMPTY;
		}
		del_kid(tdir, tname);
	}
	if ((err = add_kid(tdir, tname, n)) < 0) {
		return err;
	}
	del_kid(fdir, fname);
	fdir->dirty = tdir->dirty = 1;
	return 0;
}

static int
lz_link(const char *from, const char *to)
{
	char name[NAME_MAX + 1];
	struct node *n, *dir;
	int err;

	if ((err = resolve(from, &n)) < 0) {
		return err;
	}
	if (is_dir(n)) {
		return -EPERM;
	}
	if ((err = resolve_parent(to, &dir, name)) < 0) {
		return err;
	}
	if (find_kid(dir, name) != NULL) {
		return -EEXIST;
	}
	if ((err = add_kid(dir, name, n)) < 0) {
		return err;
	}
	dir->dirty = 1;
	return 0;
}

static int
lz_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	unsigned char page[PG];
	struct node *n;
	size_t done = 0;
	int err;

	if (is_ctl(path) || (fi->fh != 0 && ((struct handle *)(uintptr_t)fi->fh)->ctl)) {
		return ctl_read(buf, size, off);
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	if (off >= n->size) {
		return 0;
	}
	if ((off_t)size > n->size - off) {
		size = (size_t)(n->size - off);
	}
	while (done < size) {
		off_t o = off + (off_t)done;
		size_t in = (size_t)(o % PG), len = PG - in;

		if (len > size - done) {
			len = size - done;
		}
		fill_page(n, (size_t)(o / PG), page);
		memcpy(buf + done, page + in, len);
		done += len;
	}
	return (int)size;
}

static int
lz_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct node *n;
	size_t done = 0;
	int err;

	if (is_ctl(path) || (h != NULL && h->ctl)) {
		return ctl_write(buf, size);
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	if (h != NULL && (h->flags & O_APPEND)) {
		off = n->size;
	}
	if (off + (off_t)size > n->size && fs.limit >= 0 && n->nlink > 0 &&
	    fs.used + (off + (off_t)size - n->size) > fs.limit) {
		return -ENOSPC;
	}
	while (done < size) {
		off_t o = off + (off_t)done;
		size_t in = (size_t)(o % PG), len = PG - in;
		struct page *p;

		if (len > size - done) {
			len = size - done;
		}
		if ((p = get_page(n, (size_t)(o / PG))) == NULL) {
			return -ENOMEM;
		}
		memcpy(p->d + in, buf + done, len);
		p->lost = 0;
		fs.last = n;
		fs.last_pg = (size_t)(o / PG);
		done += len;
	}
	if (off + (off_t)size > n->size) {
		if (n->nlink > 0) {
			fs.used += off + (off_t)size - n->size;
		}
		n->size = off + (off_t)size;
	}
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->ctime = n->mtime;
	if (h != NULL && (h->flags & (O_SYNC | O_DSYNC)) && (err = sync_file(n)) < 0) {
		return err;
	}
	return (int)size;
}

static int
lz_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if (is_ctl(path)) {
		return 0;
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	return is_dir(n) ? -EISDIR : do_truncate(n, size);
}

static int
lz_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	(void)datasync;
	if (is_ctl(path)) {
		return 0;
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	return is_dir(n) ? sync_dir(n) : sync_file(n);
}

static int
lz_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	return lz_fsync(path, datasync, fi);
}

static int
lz_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;
}

static int
lz_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	n->mode = (n->mode & S_IFMT) | (mode & 07777);
	return 0;
}

static int
lz_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct node *n;
	int err;

	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	if (uid != (uid_t)-1) {
		n->uid = uid;
	}
	if (gid != (gid_t)-1) {
		n->gid = gid;
	}
	return 0;
}

static void
set_time(struct timespec *t, const struct timespec *v)
{
	if (v->tv_nsec == UTIME_OMIT) {
		return;
	}
	if (v->tv_nsec == UTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, t);
	} else {
		*t = *v;
	}
}

static int
lz_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
	struct node *n;
	int err;

	if (is_ctl(path)) {
		return 0;
	}
	if ((n = op_node(path, fi, &err)) == NULL) {
		return err;
	}
	if (tv == NULL) {
		tv = now;
	}
	set_time(&n->atime, &tv[0]);
	set_time(&n->mtime, &tv[1]);
	return 0;
}

static int
lz_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	if (fstatvfs(fs.root_fd, st) != 0) {
		return -errno;
	}
	if (fs.limit >= 0) {
		unsigned long bs = st->f_frsize ? st->f_frsize : PG;
		long long freeb = fs.limit > fs.used ? fs.limit - fs.used : 0;

		st->f_blocks = (fsblkcnt_t)((unsigned long long)fs.limit / bs);
		st->f_bfree = st->f_bavail = (fsblkcnt_t)((unsigned long long)freeb / bs);
	}
	return 0;
}

static int
lz_access(const char *path, int mask)
{
	struct node *n;

	(void)mask;
	return is_ctl(path) ? 0 : resolve(path, &n);
}

static const struct fuse_operations ops = {
    .init = lz_init,
    .getattr = lz_getattr,
    .readdir = lz_readdir,
    .open = lz_open,
    .opendir = lz_opendir,
    .release = lz_release,
    .releasedir = lz_release,
    .create = lz_create,
    .mknod = lz_mknod,
    .mkdir = lz_mkdir,
    .unlink = lz_unlink,
    .rmdir = lz_rmdir,
    .rename = lz_rename,
    .link = lz_link,
    .read = lz_read,
    .write = lz_write,
    .truncate = lz_truncate,
    .fsync = lz_fsync,
    .fsyncdir = lz_fsyncdir,
    .flush = lz_flush,
    .chmod = lz_chmod,
    .chown = lz_chown,
    .utimens = lz_utimens,
    .statfs = lz_statfs,
    .access = lz_access,
};

static const char *backing_arg;

static int
opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	(void)data;
	(void)out;
	if (key == FUSE_OPT_KEY_NONOPT && backing_arg == NULL) {
		backing_arg = arg;
		return 0; /* ours, not fuse's */
	}
	return 1;
}

int
main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	int err, rc;

	if (fuse_opt_parse(&args, NULL, NULL, opt_proc) != 0) {
		return 2;
	}
	if (backing_arg == NULL) {
		fprintf(stderr, "usage: lazyfs [-f] [-o FUSE_OPTION] BACKING MOUNTPOINT\n");
		return 2;
	}
	fs.root_fd = open(backing_arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs.root_fd < 0) {
		fprintf(stderr, "lazyfs: cannot open backing directory '%s': %s\n", backing_arg,
		        strerror(errno));
		return 1;
	}
	if ((err = load()) < 0) {
		fprintf(stderr, "lazyfs: cannot load '%s': %s\n", backing_arg, strerror(-err));
		return 1;
	}
	if (fuse_opt_add_arg(&args, "-s") != 0 ||
	    fuse_opt_add_arg(&args, "-ofsname=lazyfs,subtype=lazyfs") != 0) {
		return 1;
	}
	rc = fuse_main(args.argc, args.argv, &ops, NULL);
	fuse_opt_free_args(&args);
	free_all();
	close(fs.root_fd);
	return rc;
}
