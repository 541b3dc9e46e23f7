/* lazyfs_test.c - tests/tools/lazyfs: what a power cut keeps and drops, for each sync call. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[64];
static char lazyfs_bin[512];
static pid_t fs_pid = -1;
static int usable;

/* A path under the mount point; static storage, 8 in rotation. */
static const char *
mp(const char *name)
{
	static char buf[8][256];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/mnt/%s", root, name);
	return p;
}

static const char *
bk(const char *name)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s/backing/%s", root, name);
	return buf;
}

static int
mounted(void)
{
	struct stat sb;

	return stat(mp(".lazyfs"), &sb) == 0;
}

static void
mount_fs(void)
{
	char b[256], m[256];
	int i;

	snprintf(b, sizeof(b), "%s/backing", root);
	snprintf(m, sizeof(m), "%s/mnt", root);
	fs_pid = fork();
	assert_true(fs_pid >= 0);
	if (fs_pid == 0) {
		execl(lazyfs_bin, "lazyfs", "-f", b, m, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200 && !mounted(); i++) {
		usleep(20000);
	}
	assert_true(mounted());
}

static void
unmount_fs(void)
{
	char m[256];
	int st, i;

	snprintf(m, sizeof(m), "%s/mnt", root);
	for (i = 0; i < 50 && umount(m) != 0; i++) {
		usleep(20000);
	}
	if (i == 50) {
		umount2(m, MNT_DETACH); /* a failed test left a file open */
		if (fs_pid > 0) {
			kill(fs_pid, SIGKILL);
		}
	}
	if (fs_pid > 0) {
		waitpid(fs_pid, &st, 0);
	}
	fs_pid = -1;
}

static int
ctl(const char *cmd)
{
	int fd = open(mp(".lazyfs"), O_WRONLY);
	ssize_t n;
	int err;

	if (fd < 0) {
		return -errno;
	}
	n = write(fd, cmd, strlen(cmd));
	err = n == (ssize_t)strlen(cmd) ? 0 : -errno;
	close(fd);
	return err;
}

/* A power cut as the power-cut loop does it: cut, then a fresh mount over what survived. */
static void
power_cut(const char *how)
{
	assert_int_equal(ctl(how), 0);
	unmount_fs();
	mount_fs();
}

static void
put(const char *name, const char *data, int flags, int sync)
{
	int fd = open(mp(name), O_WRONLY | O_CREAT | flags, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	if (sync == 1) {
		assert_int_equal(fsync(fd), 0);
	} else if (sync == 2) {
		assert_int_equal(fdatasync(fd), 0);
	}
	assert_int_equal(close(fd), 0);
}

static void
dirsync(const char *name)
{
	int fd = open(mp(name), O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* The file's contents (static storage), or "(none)". */
static const char *
get(const char *name)
{
	static char buf[16384];
	int fd = open(mp(name), O_RDONLY);
	ssize_t n;

	if (fd < 0) {
		return "(none)";
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	char d[256];

	(void)state;
	if (!usable) {
		return 0;
	}
	snprintf(root, sizeof(root), "/tmp/lazyfs_test.XXXXXX");
	if (mkdtemp(root) == NULL) {
		return -1;
	}
	snprintf(d, sizeof(d), "%s/backing", root);
	mkdir(d, 0700);
	snprintf(d, sizeof(d), "%s/mnt", root);
	mkdir(d, 0700);
	mount_fs();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (!usable) {
		return 0;
	}
	unmount_fs();
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#define NEED_FUSE()                                                                                \
	do {                                                                                       \
		if (!usable) {                                                                     \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void
test_fsync_keeps_unsynced_drops(void **state)
{
	(void)state;
	NEED_FUSE();
	put("f", "synced", 0, 1);
	dirsync(".");
	put("f", "+later", O_APPEND, 0);
	assert_string_equal(get("f"), "synced+later"); /* reads see the cache */
	power_cut("cut");
	assert_string_equal(get("f"), "synced");
}

static void
test_fdatasync_keeps(void **state)
{
	(void)state;
	NEED_FUSE();
	put("f", "old", 0, 1);
	dirsync(".");
	put("f", "new", O_TRUNC, 2);
	put("g", "never synced", 0, 0);
	dirsync(".");
	power_cut("cut");
	assert_string_equal(get("f"), "new");
	assert_string_equal(get("g"), ""); /* the name was synced, its data never */
}

static void
test_write_without_sync_dropped(void **state)
{
	(void)state;
	NEED_FUSE();
	put("f", "aaaaaaaa", 0, 1);
	dirsync(".");
	put("f", "bbbb", 0, 0); /* overwrite in place */
	assert_string_equal(get("f"), "bbbbaaaa");
	power_cut("cut");
	assert_string_equal(get("f"), "aaaaaaaa");
	/* a truncate is dropped too */
	assert_int_equal(truncate(mp("f"), 2), 0);
	assert_string_equal(get("f"), "aa");
	power_cut("cut");
	assert_string_equal(get("f"), "aaaaaaaa");
}

static void
test_create_needs_dir_fsync(void **state)
{
	struct stat sb;

	(void)state;
	NEED_FUSE();
	put("f", "data fsynced, name not", 0, 1);
	assert_int_equal(mkdir(mp("d"), 0700), 0);
	power_cut("cut");
	assert_string_equal(get("f"), "(none)");
	assert_int_not_equal(stat(mp("d"), &sb), 0);
	/* the orphan of f is not left in the backing directory either */
	assert_int_not_equal(stat(bk(".lazyfs-orphan-2"), &sb), 0);

	put("f", "both", 0, 1);
	assert_int_equal(mkdir(mp("d"), 0700), 0);
	dirsync(".");
	put("d/g", "in d", 0, 1);
	power_cut("cut");
	assert_string_equal(get("f"), "both");
	assert_true(stat(mp("d"), &sb) == 0 && S_ISDIR(sb.st_mode));
	assert_string_equal(get("d/g"), "(none)"); /* d itself was not fsynced */

	put("d/g", "in d", 0, 1);
	dirsync("d");
	power_cut("cut");
	assert_string_equal(get("d/g"), "in d");
}

static void
test_rename_needs_dir_fsync(void **state)
{
	(void)state;
	NEED_FUSE();
	put("conf", "old", 0, 1);
	dirsync(".");
	/* the atomic-replace pattern: write a temporary, fsync it, rename it over */
	put("conf.tmp", "new", 0, 1);
	assert_int_equal(rename(mp("conf.tmp"), mp("conf")), 0);
	assert_string_equal(get("conf"), "new");
	power_cut("cut");
	assert_string_equal(get("conf"), "old");
	assert_string_equal(get("conf.tmp"), "(none)");

	put("conf.tmp", "new", 0, 1);
	assert_int_equal(rename(mp("conf.tmp"), mp("conf")), 0);
	dirsync(".");
	power_cut("cut");
	assert_string_equal(get("conf"), "new");
	assert_string_equal(get("conf.tmp"), "(none)");

	/* a rename into another directory, both synced */
	assert_int_equal(mkdir(mp("sub"), 0700), 0);
	dirsync(".");
	assert_int_equal(rename(mp("conf"), mp("sub/conf")), 0);
	dirsync("sub");
	power_cut("cut"); /* "." not synced: the old name is still there too */
	assert_string_equal(get("sub/conf"), "new");
	assert_string_equal(get("conf"), "new");
	assert_int_equal(unlink(mp("conf")), 0);
	dirsync(".");
	power_cut("cut");
	assert_string_equal(get("sub/conf"), "new");
	assert_string_equal(get("conf"), "(none)");
}

static void
test_unlink_needs_dir_fsync(void **state)
{
	(void)state;
	NEED_FUSE();
	put("f", "kept", 0, 1);
	dirsync(".");
	assert_int_equal(unlink(mp("f")), 0);
	assert_string_equal(get("f"), "(none)");
	power_cut("cut");
	assert_string_equal(get("f"), "kept");
	assert_int_equal(unlink(mp("f")), 0);
	dirsync(".");
	power_cut("cut");
	assert_string_equal(get("f"), "(none)");
}

static void
test_o_dsync_write_kept(void **state)
{
	(void)state;
	NEED_FUSE();
	put("f", "0000000000", 0, 1);
	dirsync(".");
	/* LMDB writes its meta pages through an O_DSYNC descriptor, without an fsync after */
	put("f", "11", O_DSYNC, 0);
	put("f", "222", O_SYNC | O_APPEND, 0);
	power_cut("cut");
	assert_string_equal(get("f"), "1100000000222");
}

static void
test_mmap_sees_unsynced(void **state)
{
	char *map;
	int fd;

	(void)state;
	NEED_FUSE();
	put("f", "", 0, 1);
	dirsync(".");
	fd = open(mp("f"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "abcdef", 6, 8190), 6); /* across a page boundary */
	map = mmap(NULL, 8196, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	assert_memory_equal(map + 8190, "abcdef", 6);
	assert_int_equal(pwrite(fd, "XY", 2, 8192), 2); /* a write after the map is seen too */
	assert_memory_equal(map + 8190, "abXYef", 6);
	munmap(map, 8196);
	close(fd);
	power_cut("cut");
	assert_string_equal(get("f"), "");
}

static void
test_torn_page(void **state)
{
	char a[8193], b[4097], *got;
	int fd;

	(void)state;
	NEED_FUSE();
	memset(a, 'a', 8192);
	a[8192] = '\0';
	memset(b, 'b', 4096);
	b[4096] = '\0';
	put("f", a, 0, 1);
	dirsync(".");
	fd = open(mp("f"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, 4096, 4096), 4096);
	close(fd);
	power_cut("cut tear 1000");
	got = (char *)get("f");
	assert_int_equal(strlen(got), 8192);
	assert_int_equal(strspn(got, "a"), 4096);
	assert_int_equal(strspn(got + 4096, "b"), 1000);
	assert_int_equal(strspn(got + 5096, "a"), 8192 - 5096);
	/* without tear, nothing of it */
	fd = open(mp("f"), O_WRONLY);
	assert_int_equal(pwrite(fd, b, 4096, 4096), 4096);
	close(fd);
	power_cut("cut");
	got = (char *)get("f");
	assert_int_equal(strspn(got + 4096, "b"), 1000);
	assert_int_equal(strlen(got), 8192);
}

static void
test_eio_next_fsync(void **state)
{
	int fd;

	(void)state;
	NEED_FUSE();
	put("f", "old", 0, 1);
	dirsync(".");
	assert_int_equal(ctl("eio"), 0);
	fd = open(mp("f"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "new", 3), 3);
	assert_int_equal(fsync(fd), -1);
	assert_int_equal(errno, EIO);
	/* retrying the fsync succeeds and writes nothing: the data was marked clean (fsyncgate) */
	assert_int_equal(fsync(fd), 0);
	close(fd);
	assert_string_equal(get("f"), "new");
	power_cut("cut");
	assert_string_equal(get("f"), "old");
	/* only the next one fails */
	assert_int_equal(ctl("eio"), 0);
	assert_int_equal(ctl("eio off"), 0);
	put("f", "newer", O_TRUNC, 1);
	power_cut("cut");
	assert_string_equal(get("f"), "newer");
	/* an O_DSYNC write meets it too */
	assert_int_equal(ctl("eio"), 0);
	fd = open(mp("f"), O_WRONLY | O_DSYNC);
	assert_int_equal(write(fd, "X", 1), -1);
	assert_int_equal(errno, EIO);
	close(fd);
	assert_int_equal(ctl("bogus"), -EINVAL);
}

static void
test_enospc(void **state)
{
	char buf[8000];
	int fd;

	(void)state;
	NEED_FUSE();
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(ctl("enospc 8192"), 0);
	fd = open(mp("f"), O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, 8000), 8000);
	/* as on a real full disk, a write is cut short first (the kernel sends it page by page) */
	assert_int_equal(write(fd, buf, 4000), 192);
	assert_int_equal(write(fd, buf, 1), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(ftruncate(fd, 12000), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(pwrite(fd, buf, 4000, 0), 4000); /* overwriting needs no space */
	assert_int_equal(unlink(mp("f")), 0);             /* freeing space */
	close(fd);
	put("g", "fits again", 0, 0);
	assert_int_equal(ctl("enospc off"), 0);
	fd = open(mp("g"), O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, buf, 8000), 8000);
	assert_int_equal(write(fd, buf, 8000), 8000);
	close(fd);
}

static void
test_sync_command_and_stale_handles(void **state)
{
	char c;
	int fd;

	(void)state;
	NEED_FUSE();
	assert_int_equal(mkdir(mp("a"), 0700), 0);
	assert_int_equal(mkdir(mp("a/b"), 0700), 0);
	put("a/b/f", "deep", 0, 0);
	put("top", "top", 0, 0);
	fd = open(mp("top"), O_RDONLY);
	assert_int_equal(ctl("sync"), 0);
	assert_int_equal(ctl("cut"), 0);
	/* a handle from before the cut is dead */
	assert_int_equal(read(fd, &c, 1), -1);
	assert_int_equal(errno, EIO);
	close(fd);
	unmount_fs();
	mount_fs();
	assert_string_equal(get("a/b/f"), "deep");
	assert_string_equal(get("top"), "top");
}

static int
lmdb_get(MDB_env *env, const char *key, char *out, size_t size)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc;

	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
		return rc;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) == 0 && (rc = mdb_get(txn, dbi, &k, &v)) == 0) {
		snprintf(out, size, "%.*s", (int)v.mv_size, (const char *)v.mv_data);
	}
	mdb_txn_abort(txn);
	return rc;
}

static int
lmdb_put(MDB_env *env, const char *key, const char *val)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v = {strlen(val), (void *)val};
	int rc;

	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
		return rc;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
	    (rc = mdb_put(txn, dbi, &k, &v, 0)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

static MDB_env *
lmdb_open(const char *dir, unsigned flags)
{
	MDB_env *env;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_mapsize(env, 1 << 20), 0);
	assert_int_equal(mdb_env_open(env, mp(dir), flags, 0600), 0);
	return env;
}

static void
test_lmdb_env(void **state)
{
	char val[64], big[3000];
	MDB_env *env;
	int i;

	(void)state;
	NEED_FUSE();
	assert_int_equal(mkdir(mp("env"), 0700), 0);
	dirsync(".");
	env = lmdb_open("env", 0);
	dirsync("env"); /* LMDB does not: its data.mdb name would be lost */
	assert_int_equal(lmdb_put(env, "k1", "committed with sync"), 0);
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 20; i++) {
		char key[16];

		snprintf(key, sizeof(key), "big%d", i);
		assert_int_equal(lmdb_put(env, key, big), 0);
	}
	mdb_env_close(env);

	power_cut("cut tear");
	env = lmdb_open("env", 0);
	assert_int_equal(lmdb_get(env, "k1", val, sizeof(val)), 0);
	assert_string_equal(val, "committed with sync");
	assert_int_equal(lmdb_get(env, "big19", val, sizeof(val)), 0);
	mdb_env_close(env);

	/* MDB_NOSYNC: the commit returns, the data is not on disk */
	env = lmdb_open("env", MDB_NOSYNC);
	assert_int_equal(lmdb_put(env, "k2", "committed without sync"), 0);
	assert_int_equal(lmdb_get(env, "k2", val, sizeof(val)), 0);
	mdb_env_close(env);
	power_cut("cut tear");
	env = lmdb_open("env", 0);
	assert_int_equal(lmdb_get(env, "k2", val, sizeof(val)), MDB_NOTFOUND);
	assert_int_equal(lmdb_get(env, "k1", val, sizeof(val)), 0);
	assert_string_equal(val, "committed with sync");
	mdb_env_close(env);
}

static void
test_lmdb_env_without_dir_fsync_is_lost(void **state)
{
	char val[64];
	MDB_env *env;
	struct stat sb;

	(void)state;
	NEED_FUSE();
	assert_int_equal(mkdir(mp("env"), 0700), 0);
	dirsync(".");
	env = lmdb_open("env", 0);
	assert_int_equal(lmdb_put(env, "k1", "committed with sync"), 0);
	assert_int_equal(lmdb_get(env, "k1", val, sizeof(val)), 0);
	mdb_env_close(env);
	power_cut("cut");
	/* every commit was fsynced into a file whose name never was: a store must fsync its dir */
	assert_int_not_equal(stat(mp("env/data.mdb"), &sb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fsync_keeps_unsynced_drops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fdatasync_keeps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_without_sync_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_needs_dir_fsync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rename_needs_dir_fsync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unlink_needs_dir_fsync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_o_dsync_write_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mmap_sees_unsynced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eio_next_fsync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_command_and_stale_handles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lmdb_env, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lmdb_env_without_dir_fsync_is_lost, setup,
	                                    teardown),
	};
	const char *b = getenv("IHALA_BUILD");

	snprintf(lazyfs_bin, sizeof(lazyfs_bin), "%s/tests/tools/lazyfs", b ? b : "build");
	usable = geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0 &&
	         access(lazyfs_bin, X_OK) == 0;
	if (!usable) {
		fprintf(stderr, "# lazyfs_test: needs root, /dev/fuse and %s: skipped\n",
		        lazyfs_bin);
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
