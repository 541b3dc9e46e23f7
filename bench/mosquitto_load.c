/* mosquitto_load.c - benchmark peer: Mosquitto 2, QoS 1, persistent subscriber, mutual TLS. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

/*
 *   mosquitto_load PORT PKI COUNT SIZE INFLIGHT
 *
 * The same work as the ihala end-to-end run, the MQTT way: a persistent session subscriber
 * (clean session off, QoS 1, certificate PKI/moh.pem) on topic "bench/referrals"; then a
 * publisher (PKI/dma.pem) sends COUNT QoS 1 messages of SIZE bytes, at most INFLIGHT without
 * PUBACK. Both over TLS 1.3 with client certificates to localhost:PORT. Mosquitto sends
 * PUBACK before its persistence file is written (it snapshots on autosave or exit).
 * Prints msgs_per_s (COUNT over first publish to the last of: last PUBACK, last delivery),
 * published, acked, received.
 */

struct side {
	struct mosquitto *m;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int connected, subscribed;
	uint64_t acked, received, count;
	double t_last;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct side *s = arg;

	(void)m;
	pthread_mutex_lock(&s->mu);
	s->connected = rc == 0 ? 1 : -1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *qos)
{
	struct side *s = arg;

	(void)m;
	(void)mid;
	pthread_mutex_lock(&s->mu);
	s->subscribed = n == 1 && qos[0] == 1 ? 1 : -1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
on_publish(struct mosquitto *m, void *arg, int mid)
{
	struct side *s = arg;

	(void)m;
	(void)mid;
	pthread_mutex_lock(&s->mu);
	s->acked++;
	s->t_last = now_s();
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	struct side *s = arg;

	(void)m;
	(void)msg;
	pthread_mutex_lock(&s->mu);
	s->received++;
	s->t_last = now_s();
	if (s->received >= s->count) {
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

/* Wait until *flag is non-zero or `secs` pass; returns the flag. */
static int
wait_flag(struct side *s, int *flag, int secs)
{
	struct timespec ts;
	int v;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	pthread_mutex_lock(&s->mu);
	while (*flag == 0 && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0) {
	}
	v = *flag;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static int
side_open(struct side *s, const char *id, int clean, const char *pki, const char *agency, int port)
{
	char ca[512], cert[512], key[512];

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", pki, agency);
	snprintf(key, sizeof(key), "%s/%s.key", pki, agency);
	s->m = mosquitto_new(id, clean, s);
	if (s->m == NULL ||
	    mosquitto_tls_set(s->m, ca, NULL, cert, key, NULL) != MOSQ_ERR_SUCCESS ||
	    mosquitto_tls_opts_set(s->m, 1, "tlsv1.3", NULL) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mosquitto_load: cannot set up TLS for %s\n", agency);
		return -1;
	}
	mosquitto_connect_callback_set(s->m, on_connect);
	mosquitto_subscribe_callback_set(s->m, on_subscribe);
	mosquitto_publish_callback_set(s->m, on_publish);
	mosquitto_message_callback_set(s->m, on_message);
	if (mosquitto_connect(s->m, "localhost", port, 60) != MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(s->m) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mosquitto_load: cannot connect to localhost:%d\n", port);
		return -1;
	}
	if (wait_flag(s, &s->connected, 10) != 1) {
		fprintf(stderr, "mosquitto_load: %s: connection refused\n", agency);
		return -1;
	}
	return 0;
}

static void
side_close(struct side *s)
{
	mosquitto_disconnect(s->m);
	mosquitto_loop_stop(s->m, 0);
	mosquitto_destroy(s->m);
}

int
main(int argc, char **argv)
{
	struct side sub, pub;
	uint64_t count, published = 0;
	size_t size;
	int port, inflight;
	uint8_t *body;
	double t0, t_end;
	int ok;

	if (argc != 6) {
		fprintf(stderr, "usage: mosquitto_load PORT PKI COUNT SIZE INFLIGHT\n");
		return 2;
	}
	port = atoi(argv[1]);
	count = strtoull(argv[3], NULL, 10);
	size = strtoul(argv[4], NULL, 10);
	inflight = atoi(argv[5]);
	body = malloc(size ? size : 1);
	if (body == NULL || count == 0 || inflight <= 0) {
		return 2;
	}
	memset(body, 'm', size);
	mosquitto_lib_init();
	if (side_open(&sub, "bench-sub", 0, argv[2], "moh", port) != 0) {
		return 1;
	}
	sub.count = count;
	mosquitto_subscribe(sub.m, NULL, "bench/referrals", 1);
	if (wait_flag(&sub, &sub.subscribed, 10) != 1) {
		fprintf(stderr, "mosquitto_load: subscription refused\n");
		return 1;
	}
	if (side_open(&pub, "bench-pub", 1, argv[2], "dma", port) != 0) {
		return 1;
	}
	mosquitto_max_inflight_messages_set(pub.m, (unsigned)inflight);
	t0 = now_s();
	t_end = t0 + 600;
	pthread_mutex_lock(&pub.mu);
	while (published < count && now_s() < t_end) {
		struct timespec ts;

		while (published < count && published - pub.acked < (uint64_t)inflight) {
			pthread_mutex_unlock(&pub.mu);
			if (mosquitto_publish(pub.m, NULL, "bench/referrals", (int)size, body, 1,
			                      0) != MOSQ_ERR_SUCCESS) {
				fprintf(stderr, "mosquitto_load: publish failed\n");
				return 1;
			}
			published++;
			pthread_mutex_lock(&pub.mu);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&pub.cv, &pub.mu, &ts);
	}
	pthread_mutex_unlock(&pub.mu);
	/* Every PUBACK, every delivery. */
	while ((pub.acked < count || sub.received < count) && now_s() < t_end) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	ok = pub.acked == count && sub.received == count;
	printf("msgs_per_s=%.0f\npublished=%" PRIu64 "\nacked=%" PRIu64 "\nreceived=%" PRIu64 "\n",
	       (double)count / ((pub.t_last > sub.t_last ? pub.t_last : sub.t_last) - t0),
	       published, pub.acked, sub.received);
	side_close(&pub);
	side_close(&sub);
	mosquitto_lib_cleanup();
	free(body);
	return ok ? 0 : 1;
}
