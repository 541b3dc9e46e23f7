/* metrics_test.c - unit tests of broker/metrics.c: counters, histograms, agencies, HTTP. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define ACCEPTED IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED
#define DUPLICATE IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE
#define REFUSED IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED

static char root[64];

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
group_setup(void **state)
{
	(void)state;
	log_setlevel(LOG_LEVEL_ERROR); /* refusals below warn on purpose */
	snprintf(root, sizeof(root), "/tmp/metrics_test.XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int
reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

/* The rendered text now (caller frees). */
static char *
render(void)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(&text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

/* 1 when `line` is one whole line of `text`. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n') {
			return 1;
		}
		p += n;
	}
	return 0;
}

static void
expect_line(const char *text, const char *line)
{
	if (!has_line(text, line)) {
		print_error("missing line: %s\n--- text:\n%s\n", line, text);
		fail();
	}
}

static void
expect_no_line(const char *text, const char *line)
{
	if (has_line(text, line)) {
		print_error("unexpected line: %s\n", line);
		fail();
	}
}

/* A config holding just agency ids (what metrics_set_agencies reads). */
struct fake_cfg {
	struct broker_config cfg;
	struct agency_config a[4];
};

static void
fake_cfg(struct fake_cfg *f, const char *a, const char *b, const char *c)
{
	memset(f, 0, sizeof(*f));
	f->cfg.agencies = f->a;
	if (a != NULL) {
		f->a[f->cfg.nagencies++].id = (char *)a;
	}
	if (b != NULL) {
		f->a[f->cfg.nagencies++].id = (char *)b;
	}
	if (c != NULL) {
		f->a[f->cfg.nagencies++].id = (char *)c;
	}
}

static void
test_counters(void **state)
{
	char *t;
	int i;

	(void)state;
	t = render();
	expect_line(t, "ihala_submissions_total 0");
	expect_line(t, "# TYPE ihala_submissions_total counter");
	expect_line(t, "ihala_receipts_total{status=\"accepted\"} 0");
	free(t);

	for (i = 0; i < 3; i++) {
		metrics_inc_submissions();
	}
	metrics_inc_receipt(ACCEPTED, 0);
	metrics_inc_receipt(ACCEPTED, 0);
	metrics_inc_receipt(DUPLICATE, 0);
	metrics_inc_receipt(REFUSED, IHALA_EQUEUEFULL);
	metrics_inc_receipt(REFUSED, IHALA_EQUEUEFULL);
	metrics_inc_receipt(REFUSED, IHALA_EFORBIDDEN);
	metrics_inc_receipt(99, 1);         /* out of range: ignored, not a crash */
	metrics_inc_receipt(REFUSED, -500); /* unknown code: counted as a receipt only */
	metrics_inc_deliveries();
	metrics_inc_deliveries();
	metrics_inc_acks();
	metrics_inc_overdue();
	t = render();
	expect_line(t, "ihala_submissions_total 3");
	expect_line(t, "ihala_receipts_total{status=\"accepted\"} 2");
	expect_line(t, "ihala_receipts_total{status=\"duplicate\"} 1");
	expect_line(t, "ihala_receipts_total{status=\"refused\"} 4");
	expect_line(t, "ihala_refusals_total{code=\"QUEUE_FULL\"} 2");
	expect_line(t, "ihala_refusals_total{code=\"FORBIDDEN\"} 1");
	expect_no_line(t, "ihala_refusals_total{code=\"SCHEMA\"} 0"); /* zero codes are left out */
	expect_line(t, "ihala_deliveries_total 2");
	expect_line(t, "ihala_delivery_acks_total 1");
	expect_line(t, "ihala_overdue_referrals_total 1");
	/* no store: no store gauges; no checkpoint signed: no age */
	assert_null(strstr(t, "ihala_queue_depth{"));
	assert_null(strstr(t, "ihala_log_entries"));
	assert_null(strstr(t, "ihala_checkpoint_age_seconds"));
	assert_null(strstr(t, "ihala_crl_next_update_seconds")); /* no CRL: absent */
	free(t);

	metrics_set_crl_next_update(1796494995);
	t = render();
	expect_line(t, "# TYPE ihala_crl_next_update_seconds gauge");
	expect_line(t, "ihala_crl_next_update_seconds 1796494995");
	free(t);
}

static void
test_histograms(void **state)
{
	char *t;

	(void)state;
	metrics_observe_commit(1, 50000);          /* 50 us */
	metrics_observe_commit(3, 2000000);        /* 2 ms */
	metrics_observe_commit(5000, 3000000000u); /* 3 s: past every bound */
	t = render();
	expect_line(t, "# TYPE ihala_commit_batch_size histogram");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"1\"} 1");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"2\"} 1");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"4\"} 2");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"4096\"} 2");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ihala_commit_batch_size_sum 5004");
	expect_line(t, "ihala_commit_batch_size_count 3");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"0.0001\"} 1");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"0.001\"} 1");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"0.0025\"} 2");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"2.5\"} 2");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ihala_commit_duration_seconds_sum 3.002050000");
	expect_line(t, "ihala_commit_duration_seconds_count 3");
	free(t);

	/* A value equal to a bound falls in that bucket (le is "less or equal"). */
	metrics_reset();
	metrics_observe_commit(2, 1000000);
	t = render();
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"1\"} 0");
	expect_line(t, "ihala_commit_batch_size_bucket{le=\"2\"} 1");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"0.0005\"} 0");
	expect_line(t, "ihala_commit_duration_seconds_bucket{le=\"0.001\"} 1");
	free(t);
}

static void
test_sessions_by_agency(void **state)
{
	struct fake_cfg f;
	char *t;

	(void)state;
	fake_cfg(&f, "moh", "hi", "dma");
	metrics_set_agencies(&f.cfg);
	metrics_session_opened("moh");
	metrics_session_opened("moh");
	metrics_session_opened("dma");
	metrics_session_closed("moh");
	metrics_session_closed(NULL);           /* never authenticated: nothing */
	metrics_session_closed("nobody-knows"); /* unknown: nothing, no slot made */
	metrics_session_opened(NULL);
	t = render();
	expect_line(t, "# TYPE ihala_sessions gauge");
	expect_line(t, "ihala_sessions{agency=\"moh\"} 1");
	expect_line(t, "ihala_sessions{agency=\"dma\"} 1");
	expect_line(t, "ihala_sessions{agency=\"hi\"} 0"); /* configured: shown at zero */
	assert_null(strstr(t, "nobody-knows"));
	free(t);

	/* Reload without moh and dma: moh still has a session, so it is still shown; dma's
	 * session goes, and with it the line. */
	fake_cfg(&f, "hi", "molsa", NULL);
	metrics_set_agencies(&f.cfg);
	metrics_session_closed("dma");
	t = render();
	expect_line(t, "ihala_sessions{agency=\"moh\"} 1");
	expect_line(t, "ihala_sessions{agency=\"molsa\"} 0");
	assert_null(strstr(t, "agency=\"dma\""));
	free(t);

	/* Label values are escaped per the text format. */
	metrics_session_opened("a\"b\\c");
	t = render();
	expect_line(t, "ihala_sessions{agency=\"a\\\"b\\\\c\"} 1");
	free(t);
}

/* ---- with a store and the HTTP endpoint ---- */

static void
fill_store(struct store *s)
{
	struct store_wtxn *w = NULL;
	uint64_t seq;
	int i;

	assert_int_equal(store_wbegin(s, &w), 0);
	for (i = 0; i < 5; i++) {
		assert_int_equal(store_log_append(w, "entry", 5, &seq), 0);
		assert_int_equal(store_queue_put(w, i < 3 ? "moh" : "hi", seq), 0);
	}
	assert_int_equal(store_checkpoint_put(w, 4, "ihala.test/log\n4\nAAAA\n\n— sig\n"), 0);
	assert_int_equal(store_wcommit(w), 0);
}

/* One HTTP/1.0 exchange with the endpoint; returns the whole answer (caller frees). */
static char *
http(int port, const char *request)
{
	struct sockaddr_in sa;
	char *buf = malloc(1 << 16);
	size_t len = 0;
	ssize_t n;
	int fd;

	assert_non_null(buf);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	while (len < (1 << 16) - 1 && (n = read(fd, buf + len, (1 << 16) - 1 - len)) > 0) {
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static void
test_endpoint(void **state)
{
	char dir[128];
	struct store *s = NULL;
	struct fake_cfg f;
	char *t;
	int port;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/store", root);
	assert_int_equal(store_open(dir, 0, 0, &s), 0);
	fill_store(s);
	fake_cfg(&f, "moh", "hi", "dma");
	metrics_set_agencies(&f.cfg);
	metrics_observe_checkpoint(4, 1);

	assert_int_equal(metrics_start("tcp://127.0.0.1:0", s), 0);
	assert_int_equal(metrics_start("tcp://127.0.0.1:0", s), IHALA_EINVAL); /* once */
	port = metrics_port();
	assert_true(port > 0);

	t = render();
	expect_line(t, "ihala_queue_depth{agency=\"moh\"} 3");
	expect_line(t, "ihala_queue_depth{agency=\"hi\"} 2");
	expect_line(t, "ihala_queue_depth{agency=\"dma\"} 0"); /* never queued */
	expect_line(t, "ihala_log_entries 5");
	expect_line(t, "ihala_checkpoint_size 4");
	expect_line(t, "ihala_checkpoint_signed_size 4");
	assert_non_null(strstr(t, "\nihala_checkpoint_age_seconds "));
	assert_non_null(strstr(t, "\nihala_log_bytes "));
	free(t);

	t = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
	assert_non_null(strstr(t, " 200 OK\r\n"));
	assert_non_null(strstr(t, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(t, "\nihala_queue_depth{agency=\"moh\"} 3\n"));
	free(t);

	t = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
	assert_non_null(strstr(t, " 200 "));
	assert_null(strstr(t, "ihala_queue_depth"));
	free(t);

	t = http(port, "GET /other HTTP/1.0\r\n\r\n");
	assert_non_null(strstr(t, " 404 "));
	assert_null(strstr(t, "ihala_"));
	free(t);

	t = http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
	assert_non_null(strstr(t, " 405 "));
	assert_non_null(strstr(t, "Allow: GET, HEAD"));
	free(t);

	metrics_stop();
	assert_int_equal(metrics_port(), 0);
	metrics_stop(); /* twice: no-op */
	store_close(s);
}

static void
test_start_refusals(void **state)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char ep[64];
	int fd;

	(void)state;
	assert_int_equal(metrics_start(NULL, NULL), 0); /* off */
	assert_int_equal(metrics_port(), 0);
	assert_int_equal(metrics_start("udp://127.0.0.1:9", NULL), IHALA_EINVAL);
	assert_int_equal(metrics_start("tcp://127.0.0.1", NULL), IHALA_EINVAL);
	assert_int_equal(metrics_start("tcp://no-such-host.invalid:9750", NULL), IHALA_EINVAL);

	/* A port somebody else listens on. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
	assert_int_equal(metrics_start(ep, NULL), IHALA_EIO);
	assert_int_equal(metrics_port(), 0);
	close(fd);

	/* IPv6 literal and '*' parse and bind (loopback v6 may be missing: then EIO). */
	{
		int rc = metrics_start("tcp://[::1]:0", NULL);

		assert_true(rc == 0 || rc == IHALA_EIO);
		metrics_stop();
	}
	assert_int_equal(metrics_start("tcp://*:0", NULL), 0);
	assert_true(metrics_port() > 0);
	metrics_stop();
}

/* ---- the hooks from several threads at once: no count is lost ---- */

#define N_PER_THREAD 100000

static void *
hammer(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < N_PER_THREAD; i++) {
		metrics_inc_submissions();
		metrics_inc_receipt(ACCEPTED, 0);
		metrics_observe_commit(1, 1000);
	}
	return NULL;
}

static void *
scraper(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < 200; i++) {
		char *t = NULL;
		size_t len;

		if (metrics_render(&t, &len) != 0) {
			return (void *)1;
		}
		free(t);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	pthread_t th[4], sc;
	void *rv = NULL;
	char line[128];
	char *t;
	int i;

	(void)state;
	assert_int_equal(pthread_create(&sc, NULL, scraper, NULL), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
	}
	pthread_join(sc, &rv);
	assert_null(rv);
	t = render();
	snprintf(line, sizeof(line), "ihala_submissions_total %d", 4 * N_PER_THREAD);
	expect_line(t, line);
	snprintf(line, sizeof(line), "ihala_receipts_total{status=\"accepted\"} %d",
	         4 * N_PER_THREAD);
	expect_line(t, line);
	snprintf(line, sizeof(line), "ihala_commit_batch_size_count %d", 4 * N_PER_THREAD);
	expect_line(t, line);
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_counters, reset),
	    cmocka_unit_test_setup(test_histograms, reset),
	    cmocka_unit_test_setup(test_sessions_by_agency, reset),
	    cmocka_unit_test_setup(test_endpoint, reset),
	    cmocka_unit_test_setup(test_start_refusals, reset),
	    cmocka_unit_test_setup(test_threads, reset),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
