/* rabbitmq_load.c - benchmark peer: RabbitMQ durable queue, confirms, manual acks, mutual TLS. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <openssl/ssl.h>

/*
 *   rabbitmq_load PORT PKI COUNT SIZE INFLIGHT
 *
 * The same work as the ihala end-to-end run, the RabbitMQ way: one publisher connection
 * (certificate PKI/dma.pem) publishes COUNT persistent messages (delivery_mode 2) of SIZE
 * bytes to the durable queue "bench" with publisher confirms, at most INFLIGHT unconfirmed;
 * one consumer connection (PKI/moh.pem) takes them with prefetch INFLIGHT and acks each one.
 * Both over TLS 1.3 with client certificates, to localhost:PORT. A confirm of a persistent
 * message in a durable queue comes after RabbitMQ wrote it to disk (fsync is batched).
 * Prints msgs_per_s (COUNT over first publish to the last of: last confirm, last delivery),
 * published, confirmed, nacked, consumed.
 */

struct run {
	int port;
	const char *pki;
	uint64_t count;
	size_t size;
	int inflight;
	uint64_t consumed;
	double t_last_consume;
	int failed;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
rpc_ok(amqp_connection_state_t conn, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);

	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "rabbitmq_load: %s failed (reply type %d, library error %s)\n",
		        what, (int)r.reply_type, amqp_error_string2(r.library_error));
		return 0;
	}
	return 1;
}

static amqp_connection_state_t
open_conn(const struct run *rn, const char *agency)
{
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_ssl_socket_new(conn);
	char ca[512], cert[512], key[512];
	amqp_rpc_reply_t r;

	if (sock == NULL) {
		return NULL;
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", rn->pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", rn->pki, agency);
	snprintf(key, sizeof(key), "%s/%s.key", rn->pki, agency);
	/* librabbitmq 0.11 names no TLS 1.3 constant: pin it on its SSL_CTX. */
	amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST);
	SSL_CTX_set_min_proto_version(amqp_ssl_socket_get_context(sock), TLS1_3_VERSION);
	if (amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK ||
	    amqp_ssl_socket_set_key(sock, cert, key) != AMQP_STATUS_OK) {
		fprintf(stderr, "rabbitmq_load: cannot load the certificates of %s\n", agency);
		return NULL;
	}
	amqp_ssl_socket_set_verify_peer(sock, 1);
	amqp_ssl_socket_set_verify_hostname(sock, 1);
	if (amqp_socket_open(sock, "localhost", rn->port) != AMQP_STATUS_OK) {
		fprintf(stderr, "rabbitmq_load: cannot open a TLS connection to localhost:%d\n",
		        rn->port);
		return NULL;
	}
	r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "rabbitmq_load: login refused\n");
		return NULL;
	}
	amqp_channel_open(conn, 1);
	if (!rpc_ok(conn, "channel.open")) {
		return NULL;
	}
	amqp_queue_declare(conn, 1, amqp_cstring_bytes("bench"), 0, 1, 0, 0, amqp_empty_table);
	if (!rpc_ok(conn, "queue.declare")) {
		return NULL;
	}
	return conn;
}

static void
close_conn(amqp_connection_state_t conn)
{
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

static void *
consumer_main(void *arg)
{
	struct run *rn = arg;
	amqp_connection_state_t conn = open_conn(rn, "moh");

	if (conn == NULL) {
		rn->failed = 1;
		return NULL;
	}
	amqp_basic_qos(conn, 1, 0, (uint16_t)rn->inflight, 0);
	amqp_basic_consume(conn, 1, amqp_cstring_bytes("bench"), amqp_empty_bytes, 0, 0, 0,
	                   amqp_empty_table);
	if (!rpc_ok(conn, "basic.consume")) {
		rn->failed = 1;
		return NULL;
	}
	while (rn->consumed < rn->count) {
		amqp_envelope_t env;
		amqp_rpc_reply_t r;
		struct timeval tv = {30, 0};

		amqp_maybe_release_buffers(conn);
		r = amqp_consume_message(conn, &env, &tv, 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			fprintf(stderr, "rabbitmq_load: consumer stopped after %" PRIu64 "\n",
			        rn->consumed);
			rn->failed = 1;
			break;
		}
		amqp_basic_ack(conn, 1, env.delivery_tag, 0);
		amqp_destroy_envelope(&env);
		rn->consumed++;
		rn->t_last_consume = now_s();
	}
	close_conn(conn);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct run rn;
	amqp_connection_state_t conn;
	amqp_basic_properties_t props;
	pthread_t th;
	uint8_t *body, *acked;
	uint64_t published = 0, confirmed = 0, nacked = 0, low = 1;
	double t0, t_last_confirm = 0, t_end;

	if (argc != 6) {
		fprintf(stderr, "usage: rabbitmq_load PORT PKI COUNT SIZE INFLIGHT\n");
		return 2;
	}
	memset(&rn, 0, sizeof(rn));
	rn.port = atoi(argv[1]);
	rn.pki = argv[2];
	rn.count = strtoull(argv[3], NULL, 10);
	rn.size = strtoul(argv[4], NULL, 10);
	rn.inflight = atoi(argv[5]);
	body = malloc(rn.size ? rn.size : 1);
	acked = calloc(rn.count + 2, 1);
	if (body == NULL || acked == NULL || rn.count == 0 || rn.inflight <= 0) {
		return 2;
	}
	memset(body, 'r', rn.size);
	conn = open_conn(&rn, "dma");
	if (conn == NULL) {
		return 1;
	}
	amqp_confirm_select(conn, 1);
	if (!rpc_ok(conn, "confirm.select")) {
		return 1;
	}
	amqp_queue_purge(conn, 1, amqp_cstring_bytes("bench"));
	if (pthread_create(&th, NULL, consumer_main, &rn) != 0) {
		return 1;
	}
	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
	props.delivery_mode = 2;
	props.content_type = amqp_cstring_bytes("application/x-protobuf");
	t0 = now_s();
	t_end = t0 + 600;
	while (confirmed + nacked < rn.count && !rn.failed && now_s() < t_end) {
		amqp_frame_t fr;
		struct timeval tv = {0, 0};
		int rc;

		while (published < rn.count &&
		       published - (confirmed + nacked) < (uint64_t)rn.inflight) {
			memcpy(body, &published,
			       sizeof(published) <= rn.size ? sizeof(published) : 0);
			if (amqp_basic_publish(conn, 1, amqp_empty_bytes,
			                       amqp_cstring_bytes("bench"), 0, 0, &props,
			                       (amqp_bytes_t){.len = rn.size, .bytes = body}) !=
			    AMQP_STATUS_OK) {
				fprintf(stderr, "rabbitmq_load: publish failed\n");
				return 1;
			}
			published++;
		}
		/* Wait for confirms only when the window is full or everything is out. */
		if (published < rn.count &&
		    published - (confirmed + nacked) < (uint64_t)rn.inflight) {
			continue;
		}
		tv.tv_sec = 1;
		rc = amqp_simple_wait_frame_noblock(conn, &fr, &tv);
		if (rc == AMQP_STATUS_TIMEOUT) {
			continue;
		}
		if (rc != AMQP_STATUS_OK) {
			fprintf(stderr, "rabbitmq_load: %s\n", amqp_error_string2(rc));
			return 1;
		}
		if (fr.frame_type != AMQP_FRAME_METHOD) {
			continue;
		}
		if (fr.payload.method.id == AMQP_BASIC_ACK_METHOD ||
		    fr.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			int nack = fr.payload.method.id == AMQP_BASIC_NACK_METHOD;
			uint64_t tag, multiple, i;

			if (nack) {
				amqp_basic_nack_t *m = fr.payload.method.decoded;

				tag = m->delivery_tag;
				multiple = m->multiple;
			} else {
				amqp_basic_ack_t *m = fr.payload.method.decoded;

				tag = m->delivery_tag;
				multiple = m->multiple;
			}
			for (i = multiple ? low : tag; i <= tag && i <= rn.count; i++) {
				if (!acked[i]) {
					acked[i] = 1;
					if (nack) {
						nacked++;
					} else {
						confirmed++;
					}
				}
			}
			while (low <= rn.count && acked[low]) {
				low++;
			}
			t_last_confirm = now_s();
		}
	}
	pthread_join(th, NULL);
	printf("msgs_per_s=%.0f\npublished=%" PRIu64 "\nconfirmed=%" PRIu64 "\nnacked=%" PRIu64
	       "\nconsumed=%" PRIu64 "\n",
	       (double)rn.count /
	           ((t_last_confirm > rn.t_last_consume ? t_last_confirm : rn.t_last_consume) - t0),
	       published, confirmed, nacked, rn.consumed);
	close_conn(conn);
	free(body);
	free(acked);
	return confirmed == rn.count && rn.consumed == rn.count ? 0 : 1;
}
