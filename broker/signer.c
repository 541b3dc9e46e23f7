/* signer.c - the checkpoint key's own process: forked at start, signs tree heads on request. */
#include "signer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "error.h"
#include "log.h"
#include "priv.h"

#define SIGNER_MAGIC 0x31736869u /* "ihs1" */
/* A signed checkpoint of ours: origin (255) + size (20) + root (44) + signature line
 * (name 255 + 96): well under this. */
#define SIGNER_TEXT_MAX 1024
#define READY_TIMEOUT_MS 10000
#define SIGN_TIMEOUT_MS 5000

/* The only request: a tree head. Fixed size; anything else is refused. */
struct sign_req {
	uint32_t magic;
	uint32_t id;
	uint64_t size;
	uint8_t root[CHECKPOINT_HASH_LEN];
};

/* The only answer: id of the request (0: the start-up word), error or the note. */
struct sign_rep {
	uint32_t magic;
	uint32_t id;
	int32_t err;
	uint32_t len;
	char text[SIGNER_TEXT_MAX];
};

struct signer {
	int fd;
	pid_t pid;
	int reaped;
	uint32_t next_id;
	pthread_mutex_t mu;
	char origin[CHECKPOINT_NAME_MAX + 1];
};

/* ---- the child ---- */

static int
send_rep(int fd, struct sign_rep *rep)
{
	rep->magic = SIGNER_MAGIC;
	return send(fd, rep, sizeof(*rep), MSG_NOSIGNAL) == (ssize_t)sizeof(*rep) ? 0 : -1;
}

/* Is (size, root) a tree head the signer may sign after (last, last_root)? */
static const char *
head_refused(const struct sign_req *q, uint64_t last, const uint8_t last_root[])
{
	if (q->magic != SIGNER_MAGIC) {
		return "not a signing request";
	}
	if (q->size == 0) {
		return "tree size 0";
	}
	if (q->size < last) {
		return "tree size below one already signed";
	}
	if (q->size == last && memcmp(q->root, last_root, CHECKPOINT_HASH_LEN) != 0) {
		return "another root for a tree size already signed";
	}
	return NULL;
}

static void __attribute__((noreturn))
signer_main(int fd, const char *key_file, const char *origin, const char *user, pid_t parent)
{
	struct checkpoint_signer *cs = NULL;
	uint8_t last_root[CHECKPOINT_HASH_LEN];
	uint64_t last = 0, n_signed = 0;
	union {
		struct sign_req q;
		uint8_t raw[sizeof(struct sign_req) + 1];
	} in;
	struct sign_rep rep;
	const char *refused;
	ssize_t n;
	char *text;
	int err;

	/* No core dump and no ptrace by the unprivileged user: the key stays in here. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&rep, 0, sizeof(rep));
	err = checkpoint_key_load(key_file, origin, &cs);
	if (err == 0) {
		err = priv_drop(user);
	}
	/* After the switch of user, which clears it; then the parent may already be gone. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (err == 0 && getppid() != parent) {
		err = IHALA_ECLOSED;
	}
	rep.err = err;
	if (send_rep(fd, &rep) != 0 || err != 0) {
		checkpoint_signer_free(cs);
		_exit(1);
	}
	memset(last_root, 0, sizeof(last_root));
	for (;;) {
		n = recv(fd, &in, sizeof(in), 0);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break; /* the broker closed its end, or is gone */
		}
		memset(&rep, 0, sizeof(rep));
		refused = n != (ssize_t)sizeof(in.q) ? "request of the wrong size"
		                                     : head_refused(&in.q, last, last_root);
		rep.id = n >= (ssize_t)sizeof(uint64_t) ? in.q.id : 0;
		if (refused != NULL) {
			log_security("checkpoint signer: request refused: %s", refused);
			rep.err = IHALA_EINVAL;
		} else if ((err = checkpoint_sign(cs, origin, in.q.size, in.q.root, &text)) != 0) {
			rep.err = err;
		} else {
			size_t len = strlen(text);

			if (len >= sizeof(rep.text)) {
				rep.err = IHALA_ETOOLARGE;
			} else {
				memcpy(rep.text, text, len + 1);
				rep.len = (uint32_t)len;
				last = in.q.size;
				memcpy(last_root, in.q.root, CHECKPOINT_HASH_LEN);
				n_signed++;
			}
			free(text);
		}
		if (send_rep(fd, &rep) != 0) {
			break;
		}
	}
	log_debug("checkpoint signer: %llu checkpoints signed; exiting",
	          (unsigned long long)n_signed);
	checkpoint_signer_free(cs);
	_exit(0);
}

/* ---- the broker's side ---- */

/* One answer within timeout_ms: 0, IHALA_ECLOSED, IHALA_ETIMEDOUT, IHALA_EINTERNAL. */
static int
recv_rep(int fd, struct sign_rep *rep, int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	ssize_t n;
	int rc;

	do {
		rc = poll(&p, 1, timeout_ms);
	} while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		return IHALA_ETIMEDOUT;
	}
	if (rc < 0) {
		return IHALA_EINTERNAL;
	}
	do {
		n = recv(fd, rep, sizeof(*rep), 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		return IHALA_ECLOSED;
	}
	if (n != (ssize_t)sizeof(*rep) || rep->magic != SIGNER_MAGIC ||
	    rep->len >= sizeof(rep->text)) {
		return IHALA_EINTERNAL;
	}
	rep->text[rep->len] = '\0';
	return 0;
}

int
signer_start(const char *key_file, const char *origin, const char *user, int close_fd,
             struct signer **out)
{
	struct signer *sg;
	struct sign_rep rep;
	pid_t parent = getpid();
	int sv[2], err;

	*out = NULL;
	if (origin == NULL || strlen(origin) > CHECKPOINT_NAME_MAX ||
	    (sg = calloc(1, sizeof(*sg))) == NULL) {
		return origin == NULL ? IHALA_EINVAL : IHALA_ENOMEM;
	}
	snprintf(sg->origin, sizeof(sg->origin), "%s", origin);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		log_warn("checkpoint signer: socketpair");
		free(sg);
		return IHALA_EINTERNAL;
	}
	fflush(NULL); /* nothing buffered is written twice */
	sg->pid = fork();
	if (sg->pid < 0) {
		log_warn("checkpoint signer: fork");
		close(sv[0]);
		close(sv[1]);
		free(sg);
		return IHALA_EINTERNAL;
	}
	if (sg->pid == 0) {
		free(sg); /* the parent's handle */
		close(sv[0]);
		if (close_fd >= 0) {
			close(close_fd);
		}
		signer_main(sv[1], key_file, origin, user, parent);
	}
	close(sv[1]);
	sg->fd = sv[0];
	sg->next_id = 1;
	pthread_mutex_init(&sg->mu, NULL);
	err = recv_rep(sg->fd, &rep, READY_TIMEOUT_MS);
	if (err == 0) {
		err = rep.err;
	} else {
		log_warnx("checkpoint signer (pid %ld) did not start: %s", (long)sg->pid,
		          ihala_strerror(err));
	}
	if (err != 0) {
		signer_stop(sg);
		return err;
	}
	log_info("checkpoint signer running as pid %ld; this process never holds the key",
	         (long)sg->pid);
	*out = sg;
	return 0;
}

int
signer_sign(struct signer *sg, const char *origin, uint64_t size,
            const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out)
{
	struct sign_req q;
	struct sign_rep rep;
	ssize_t n;
	int err;

	*text_out = NULL;
	if (origin == NULL || strcmp(origin, sg->origin) != 0) {
		return IHALA_EINVAL;
	}
	memset(&q, 0, sizeof(q));
	q.magic = SIGNER_MAGIC;
	q.size = size;
	memcpy(q.root, root, CHECKPOINT_HASH_LEN);
	pthread_mutex_lock(&sg->mu);
	q.id = sg->next_id++;
	do {
		n = send(sg->fd, &q, sizeof(q), MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(q)) {
		pthread_mutex_unlock(&sg->mu);
		return IHALA_ECLOSED;
	}
	/* An answer to an earlier request that timed out is skipped. */
	while ((err = recv_rep(sg->fd, &rep, SIGN_TIMEOUT_MS)) == 0 && rep.id != q.id) {
	}
	pthread_mutex_unlock(&sg->mu);
	if (err != 0) {
		return err;
	}
	if (rep.err != 0) {
		return rep.err;
	}
	if ((*text_out = strdup(rep.text)) == NULL) {
		return IHALA_ENOMEM;
	}
	return 0;
}

int
signer_sign_cb(void *arg, const char *origin, uint64_t size,
               const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out)
{
	return signer_sign(arg, origin, size, root, text_out);
}

pid_t
signer_pid(const struct signer *sg)
{
	return sg->pid;
}

int
signer_exited(struct signer *sg, char *why, size_t whylen)
{
	int st;
	pid_t r;

	if (sg->reaped) {
		snprintf(why, whylen, "has exited");
		return 1;
	}
	r = waitpid(sg->pid, &st, WNOHANG);
	if (r != sg->pid) {
		return 0;
	}
	sg->reaped = 1;
	if (WIFSIGNALED(st)) {
		snprintf(why, whylen, "was killed by signal %d", WTERMSIG(st));
	} else {
		snprintf(why, whylen, "exited with status %d", WEXITSTATUS(st));
	}
	return 1;
}

void
signer_stop(struct signer *sg)
{
	int i;

	if (sg == NULL) {
		return;
	}
	close(sg->fd);
	/* It exits at the end of its socket; one that does not within a second (stopped,
	 * stuck) is killed: it holds nothing to save. */
	for (i = 0; !sg->reaped && i < 100; i++) {
		if (waitpid(sg->pid, NULL, WNOHANG) == sg->pid) {
			sg->reaped = 1;
		} else {
			usleep(10 * 1000);
		}
	}
	if (!sg->reaped) {
		kill(sg->pid, SIGKILL);
		while (waitpid(sg->pid, NULL, 0) < 0 && errno == EINTR) {
		}
	}
	pthread_mutex_destroy(&sg->mu);
	free(sg);
}
