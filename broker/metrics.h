/* metrics.h - the broker's Prometheus text metrics: lock-free counters served by libmicrohttpd. */
#ifndef IHALA_METRICS_H
#define IHALA_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct broker_config;

/*
 * One set of metrics per process (the broker runs one server). Counters are C11 atomics
 * updated with relaxed ordering: the hooks below never lock and never allocate, so the main
 * thread and the writer thread call them on their hot paths. They count whether or not the
 * HTTP endpoint runs.
 *
 * The endpoint (metrics_start) serves GET /metrics from libmicrohttpd's own thread. A scrape
 * reads the counters, and from the store (short read transactions) the queue depth of every
 * configured agency, the log size and the latest checkpoint.
 *
 * Exposed (all names prefixed ihala_):
 *   sessions{agency}                 gauge   authenticated sessions
 *   queue_depth{agency}              gauge   undelivered entries (read from the store)
 *   submissions_total                counter Submit frames received
 *   receipts_total{status}           counter receipts sent: accepted, duplicate, refused
 *   refusals_total{code}             counter refused submissions by error name (QUEUE_FULL)
 *   deliveries_total                 counter Deliver frames sent (redeliveries included)
 *   delivery_acks_total              counter DeliveryAck frames received
 *   overdue_referrals_total          counter referrals marked overdue
 *   reloads_total{result}            counter SIGHUP reloads: applied, refused
 *   commit_batch_size                histogram requests per group commit
 *   commit_duration_seconds          histogram time of the synchronous LMDB commit
 *   log_entries, log_bytes, store_map_bytes   gauges from store_stat
 *   checkpoint_size                  gauge   tree size of the latest signed checkpoint
 *   checkpoint_age_seconds           gauge   since this process last signed one (absent
 *                                            until it has)
 *   start_time_seconds               gauge   process start (Unix time)
 */

/*
 * metrics_start: serve GET /metrics on `endpoint` (tcp://HOST:PORT as checked by the config:
 * HOST an address, a name, '*' or [IPv6]). `endpoint` NULL: metrics are off, returns 0.
 * `store` is borrowed until metrics_stop (which must come before store_close); it may be
 * NULL (no store gauges). Call from the main thread, after the signals are blocked (the
 * HTTP thread inherits the mask) and before dropping privileges (so a low port may bind).
 * Errors: IHALA_EINVAL (bad endpoint, already started), IHALA_EIO (cannot listen; logged).
 */
int metrics_start(const char *endpoint, struct store *store);
/* Stop serving and join the HTTP thread. No-op when not started. */
void metrics_stop(void);
/* The port the endpoint listens on (tests bind port 0), or 0 when off. */
int metrics_port(void);

/*
 * Main thread only: the configured agencies (at start and after each reload). Their
 * queues are scraped; agencies no longer configured stop being reported once they have no
 * session. `cfg` is read during the call only.
 */
void metrics_set_agencies(const struct broker_config *cfg);

/* ---- hooks (lock-free) ---- */

/* Main thread only: an agency's session authenticated / ended. NULL: nothing (a session
 * that never authenticated). */
void metrics_session_opened(const char *agency);
void metrics_session_closed(const char *agency);

/* Any thread. */
void metrics_inc_submissions(void);
/* A receipt went out with `status` (Ihala__V2__ReceiptStatus); `err` != 0 also counts a
 * refusal under ihala_errname(err). */
void metrics_inc_receipt(int status, int err);
void metrics_inc_deliveries(void);
void metrics_inc_acks(void);
void metrics_inc_overdue(void);
void metrics_inc_erasures(void);
/* A SIGHUP reload was applied (refused 0) or refused (1). */
void metrics_inc_reload(int refused);
/* A group commit of `batch` requests whose store_wcommit took `ns` nanoseconds. */
void metrics_observe_commit(size_t batch, uint64_t ns);
/* A checkpoint of tree size `size` was signed at `when_ms` (Unix ms). */
void metrics_observe_checkpoint(uint64_t size, uint64_t when_ms);
/* Main thread: the nextUpdate (Unix seconds) of the CRL now in force; 0: none. */
void metrics_set_crl_next_update(int64_t when_s);
/* ---- for tests ---- */

/* The text a scrape returns now: *out is malloc'd (caller frees), *len its length.
 * IHALA_ENOMEM. */
int metrics_render(char **out, size_t *len);
/* Zero every counter and forget the agencies. Not while the endpoint serves. */
void metrics_reset(void);

#endif
