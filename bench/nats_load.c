/* nats_load.c - benchmark peer: NATS JetStream, file stream, durable push consumers, mutual TLS. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

/*
 *   nats_load PORT PKI COUNT SIZE INFLIGHT
 *
 * The same work as the ihala end-to-end run, the JetStream way: the file-backed stream
 * "BENCH" (subjects bench.>, one replica, limits retention: a log, as ihala keeps one) with
 * one durable push consumer per recipient (moh, molsa, hi; each filtered on bench.AGENCY,
 * explicit acks, at most INFLIGHT unacked), each recipient on its own connection
 * (certificate PKI/AGENCY.pem) acking every message it gets; then a publisher (PKI/dma.pem)
 * sends COUNT messages of SIZE bytes round-robin to bench.moh, bench.molsa, bench.hi with
 * asynchronous publishes, at most INFLIGHT without the stream's PubAck. Like ihala's
 * 1-sender run: 1 sender, 3 acking recipients, each message to one of them. All over TLS
 * with client certificates to localhost:PORT (the server requires and verifies them).
 * JetStream sends a PubAck once the message is in its file store's write buffer, before
 * fsync: its store syncs on a background timer (the sync interval).
 * Prints msgs_per_s (COUNT over first publish to the last of: last PubAck, last delivery),
 * published, acked, pub_errors, received.
 */

#define N_RECV 3

static const char *const RECIPIENTS[N_RECV] = {"moh", "molsa", "hi"};

struct side {
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;
	pthread_mutex_t mu;
	uint64_t acked, errors, received;
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
fail(const char *what, natsStatus s, jsErrCode jerr)
{
	fprintf(stderr, "nats_load: %s: %s (JetStream error %d)\n", what, natsStatus_GetText(s),
	        (int)jerr);
	nats_PrintLastErrorStack(stderr);
}

/* Publisher: one PubAck (or error) per asynchronous publish. */
static void
on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
	struct side *s = arg;

	(void)js;
	pthread_mutex_lock(&s->mu);
	if (pa != NULL) {
		s->acked++;
	} else {
		if (s->errors++ < 3 && pae != NULL) {
			fprintf(stderr, "nats_load: publish failed: %s\n",
			        pae->ErrText != NULL ? pae->ErrText : natsStatus_GetText(pae->Err));
		}
	}
	s->t_last = now_s();
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(msg);
}

/* Recipient: ack each message explicitly, as soon as it arrives. */
static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct side *s = arg;
	natsStatus st = natsMsg_Ack(msg, NULL);

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&s->mu);
	if (st == NATS_OK) {
		s->received++;
	} else if (s->errors++ < 3) {
		fprintf(stderr, "nats_load: ack failed: %s\n", natsStatus_GetText(st));
	}
	s->t_last = now_s();
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(msg);
}

static int
side_open(struct side *s, const char *pki, const char *agency, int port, int inflight)
{
	char url[64], ca[512], cert[512], key[512];
	natsOptions *o = NULL;
	jsOptions jo;
	natsStatus st;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	snprintf(url, sizeof(url), "tls://localhost:%d", port);
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", pki, agency);
	snprintf(key, sizeof(key), "%s/%s.key", pki, agency);
	st = natsOptions_Create(&o);
	if (st == NATS_OK) {
		st = natsOptions_SetURL(o, url);
	}
	if (st == NATS_OK) {
		st = natsOptions_SetSecure(o, true);
	}
	if (st == NATS_OK) {
		st = natsOptions_LoadCATrustedCertificates(o, ca);
	}
	if (st == NATS_OK) {
		st = natsOptions_LoadCertificatesChain(o, cert, key);
	}
	if (st == NATS_OK) {
		st = natsOptions_SetExpectedHostname(o, "localhost");
	}
	if (st == NATS_OK) {
		st = natsOptions_SetName(o, agency);
	}
	if (st == NATS_OK) {
		st = natsOptions_SetAllowReconnect(o, false);
	}
	if (st == NATS_OK) {
		st = natsConnection_Connect(&s->nc, o);
	}
	natsOptions_Destroy(o);
	if (st != NATS_OK) {
		fail(agency, st, 0);
		return -1;
	}
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	jo.PublishAsync.MaxPending = inflight;
	jo.PublishAsync.AckHandler = on_puback;
	jo.PublishAsync.AckHandlerClosure = s;
	jo.PublishAsync.StallWait = 10000; /* block at INFLIGHT unacked rather than fail */
	st = natsConnection_JetStream(&s->js, s->nc, &jo);
	if (st != NATS_OK) {
		fail("JetStream context", st, 0);
		return -1;
	}
	return 0;
}

static void
side_close(struct side *s)
{
	natsSubscription_Destroy(s->sub);
	jsCtx_Destroy(s->js);
	natsConnection_Destroy(s->nc);
}

/* A fresh stream and one durable push consumer per recipient. */
static int
setup_stream(jsCtx *js, int inflight)
{
	const char *subjects[] = {"bench.>"};
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus st;
	int i;

	js_DeleteStream(js, "BENCH", NULL, NULL); /* a previous trial's, if any */
	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH";
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Retention = js_LimitsPolicy;
	sc.Replicas = 1;
	st = js_AddStream(NULL, js, &sc, NULL, &jerr);
	if (st != NATS_OK) {
		fail("add stream", st, jerr);
		return -1;
	}
	for (i = 0; i < N_RECV; i++) {
		char filter[64], deliver[64];
		jsConsumerConfig cc;

		snprintf(filter, sizeof(filter), "bench.%s", RECIPIENTS[i]);
		snprintf(deliver, sizeof(deliver), "deliver.%s", RECIPIENTS[i]);
		jsConsumerConfig_Init(&cc);
		cc.Durable = RECIPIENTS[i];
		cc.DeliverSubject = deliver;
		cc.FilterSubject = filter;
		cc.AckPolicy = js_AckExplicit;
		cc.DeliverPolicy = js_DeliverAll;
		cc.MaxAckPending = inflight;
		st = js_AddConsumer(NULL, js, "BENCH", &cc, NULL, &jerr);
		if (st != NATS_OK) {
			fail("add consumer", st, jerr);
			return -1;
		}
	}
	return 0;
}

static int
subscribe(struct side *r, const char *agency)
{
	char filter[64];
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;

	snprintf(filter, sizeof(filter), "bench.%s", agency);
	jsSubOptions_Init(&so);
	so.Stream = "BENCH";
	so.Consumer = agency; /* bind to the durable made above */
	so.ManualAck = true;
	st = js_Subscribe(&r->sub, r->js, filter, on_msg, r, NULL, &so, &jerr);
	if (st == NATS_OK) {
		st = natsSubscription_SetPendingLimits(r->sub, -1, -1);
	}
	if (st != NATS_OK) {
		fail("subscribe", st, jerr);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct side pub, rcv[N_RECV];
	uint64_t count, i, received = 0, rerrors = 0;
	size_t size;
	int port, inflight, ok;
	uint8_t *body;
	double t0, t_end, t_last;
	jsPubOptions po;
	natsStatus st;

	if (argc != 6) {
		fprintf(stderr, "usage: nats_load PORT PKI COUNT SIZE INFLIGHT\n");
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
	memset(body, 'n', size);
	if (side_open(&pub, argv[2], "dma", port, inflight) != 0 ||
	    setup_stream(pub.js, inflight) != 0) {
		return 1;
	}
	for (i = 0; i < N_RECV; i++) {
		if (side_open(&rcv[i], argv[2], RECIPIENTS[i], port, inflight) != 0 ||
		    subscribe(&rcv[i], RECIPIENTS[i]) != 0) {
			return 1;
		}
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 10000;
	t0 = now_s();
	t_end = t0 + 600;
	for (i = 0; i < count && now_s() < t_end; i++) {
		static const char *const SUBJ[N_RECV] = {"bench.moh", "bench.molsa", "bench.hi"};

		st = js_PublishAsync(pub.js, SUBJ[i % N_RECV], body, (int)size, NULL);
		if (st == NATS_TIMEOUT) { /* stalled at INFLIGHT for StallWait: try again */
			i--;
			continue;
		}
		if (st != NATS_OK) {
			fail("publish", st, 0);
			return 1;
		}
	}
	st = js_PublishAsyncComplete(pub.js, &po);
	if (st != NATS_OK) {
		fail("waiting for the PubAcks", st, 0);
	}
	while (now_s() < t_end) {
		struct timespec ts = {0, 5 * 1000 * 1000};
		uint64_t acked;

		received = 0;
		for (i = 0; i < N_RECV; i++) {
			pthread_mutex_lock(&rcv[i].mu);
			received += rcv[i].received;
			pthread_mutex_unlock(&rcv[i].mu);
		}
		pthread_mutex_lock(&pub.mu);
		acked = pub.acked + pub.errors;
		pthread_mutex_unlock(&pub.mu);
		if (received >= count && acked >= count) {
			break;
		}
		nanosleep(&ts, NULL);
	}
	t_last = pub.t_last;
	for (i = 0; i < N_RECV; i++) {
		pthread_mutex_lock(&rcv[i].mu);
		if (rcv[i].t_last > t_last) {
			t_last = rcv[i].t_last;
		}
		rerrors += rcv[i].errors;
		pthread_mutex_unlock(&rcv[i].mu);
	}
	ok = pub.acked == count && received == count && pub.errors == 0 && rerrors == 0;
	printf("msgs_per_s=%.0f\npublished=%" PRIu64 "\nacked=%" PRIu64 "\npub_errors=%" PRIu64
	       "\nreceived=%" PRIu64 "\nack_errors=%" PRIu64 "\n",
	       (double)count / (t_last - t0), count, pub.acked, pub.errors, received, rerrors);
	for (i = 0; i < N_RECV; i++) {
		side_close(&rcv[i]);
	}
	js_DeleteStream(pub.js, "BENCH", NULL, NULL);
	side_close(&pub);
	nats_Close();
	free(body);
	return ok ? 0 : 1;
}
