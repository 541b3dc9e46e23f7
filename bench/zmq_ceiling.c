/* zmq_ceiling.c - benchmark ceiling: raw ZeroMQ DEALER -> ROUTER over loopback TCP. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

/*
 *   zmq_ceiling ENDPOINT COUNT SIZE WINDOW
 *
 * One process, two threads, two ZeroMQ contexts (so the bytes really cross loopback TCP as
 * between the broker and a client). The DEALER sends COUNT messages of SIZE bytes.
 * WINDOW 0: a one-way stream; the ROUTER answers once at the end.
 * WINDOW W: the ROUTER answers every message with 16 bytes (as a receipt) and the DEALER
 * keeps at most W unanswered (as Welcome.limits.max_inflight).
 * Prints "msgs_per_s=R". No TLS, no store: what the transport alone carries.
 */

struct args {
	const char *ep;
	uint64_t count;
	int window;
	int ready;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
router_main(void *arg)
{
	struct args *a = arg;
	void *ctx = zmq_ctx_new();
	void *r = zmq_socket(ctx, ZMQ_ROUTER);
	int hwm = 0;
	uint64_t n = 0;
	uint8_t ack[16];

	memset(ack, 0, sizeof(ack));
	zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	if (zmq_bind(r, a->ep) != 0) {
		fprintf(stderr, "zmq_ceiling: bind %s: %s\n", a->ep, zmq_strerror(zmq_errno()));
		exit(1);
	}
	pthread_mutex_lock(&a->mu);
	a->ready = 1;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	while (n < a->count) {
		uint8_t rid[256];
		int ridlen = zmq_recv(r, rid, sizeof(rid), 0);
		zmq_msg_t m;

		zmq_msg_init(&m);
		zmq_msg_recv(&m, r, 0);
		zmq_msg_close(&m);
		n++;
		if (a->window > 0 || n == a->count) {
			zmq_send(r, rid, (size_t)ridlen, ZMQ_SNDMORE);
			zmq_send(r, ack, sizeof(ack), 0);
		}
	}
	zmq_close(r);
	zmq_ctx_term(ctx);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct args a;
	pthread_t th;
	void *ctx, *d;
	uint8_t *buf, ack[16];
	uint64_t sent = 0, acked = 0;
	size_t size;
	int hwm = 0;
	double t0, t1;

	if (argc != 5) {
		fprintf(stderr, "usage: zmq_ceiling ENDPOINT COUNT SIZE WINDOW\n");
		return 2;
	}
	memset(&a, 0, sizeof(a));
	a.ep = argv[1];
	a.count = strtoull(argv[2], NULL, 10);
	size = strtoul(argv[3], NULL, 10);
	a.window = atoi(argv[4]);
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	buf = calloc(1, size ? size : 1);
	if (buf == NULL || a.count == 0 || pthread_create(&th, NULL, router_main, &a) != 0) {
		return 2;
	}
	pthread_mutex_lock(&a.mu);
	while (!a.ready) {
		pthread_cond_wait(&a.cv, &a.mu);
	}
	pthread_mutex_unlock(&a.mu);
	ctx = zmq_ctx_new();
	d = zmq_socket(ctx, ZMQ_DEALER);
	zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_connect(d, a.ep);
	t0 = now_s();
	if (a.window == 0) {
		for (sent = 0; sent < a.count; sent++) {
			zmq_send(d, buf, size, 0);
		}
		zmq_recv(d, ack, sizeof(ack), 0);
	} else {
		while (acked < a.count) {
			while (sent < a.count && sent - acked < (uint64_t)a.window) {
				zmq_send(d, buf, size, 0);
				sent++;
			}
			zmq_recv(d, ack, sizeof(ack), 0);
			acked++;
		}
	}
	t1 = now_s();
	pthread_join(th, NULL);
	printf("msgs_per_s=%.0f\n", (double)a.count / (t1 - t0));
	zmq_close(d);
	zmq_ctx_term(ctx);
	free(buf);
	return 0;
}
