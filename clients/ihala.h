/* ihala.h - libihala: the client library every agency node links (connect, submit, receive). */
#ifndef IHALA_CLIENT_H
#define IHALA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "clientconf.h"
#include "error.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "merkle.h"

/*
 * Threading: an ihala_client is used by one thread at a time (it owns a ZeroMQ socket and a
 * TLS session, neither of which is thread-safe). Several clients may live in one process,
 * but not on the same data_dir.
 *
 * Processes: several processes may open the same data_dir at once (the store is LMDB, safe
 * across processes); each has its own TLS session with the agency's certificate. The broker
 * sends an agency's deliveries to one of its sessions at a time; a process that does not
 * take deliveries (ihala_take_deliveries(c, 0)) leaves them unstored and unacked, and the
 * broker sends them again to the agency's next session once this one ends. At most one
 * process per data_dir takes deliveries (ihala_take_deliveries(c, 1) locks that).
 *
 * Errors: every call returns 0 or a negative code from error.h; ihala_errmsg() then has a
 * sentence for people with the detail (the broker's refusal, the TLS reason, ...).
 *
 * Durability: ihala_submit writes the envelope to the local outbox (LMDB, synced) before it
 * sends it; it leaves the outbox only when the broker's receipt (sent after the broker's own
 * synced commit) arrives. Re-sends reuse the message id, so the broker logs it once.
 * Deliveries are written to the local inbox before the application sees them; a seq the
 * application already took (ihala_ack) is acked again and never shown twice.
 */

struct ihala_client;

/* Open the node: reads nothing from the network yet. `cfg` is borrowed for the client's
 * life. *out is released with ihala_close. */
int ihala_open(const struct client_config *cfg, struct ihala_client **out);

/* Close the session (close_notify), the socket and the local store. NULL is fine. */
void ihala_close(struct ihala_client *c);

/* The last error's sentence; "" when none. Owned by the client, valid until the next call. */
const char *ihala_errmsg(const struct ihala_client *c);

/*
 * Connect and authenticate: TLS 1.3 handshake, then wait for the broker's Welcome. Returns
 * 0 once it came; IHALA_EUNREACHABLE when the broker does not answer within timeout_ms;
 * IHALA_EHANDSHAKE when TLS failed (ihala_errmsg says why, e.g. "tlsv1 alert unknown ca");
 * or the broker's refusal code (IHALA_EUNKNOWNAGENCY, IHALA_EFINGERPRINT, ...). Calls made
 * later reconnect by themselves when the session is lost.
 *
 * With cfg->checkpoint_key set, every session's Welcome checkpoint is verified and must
 * extend the last checkpoint this node kept (consistency proof) before anything is sent;
 * the node then keeps it. IHALA_ESIGNATURE when it does not verify; IHALA_EINCONSISTENT
 * when the broker's log contradicts the kept checkpoint (rewritten or forked history): this
 * and every later call of this client then fail with IHALA_EINCONSISTENT. Without a key,
 * checkpoints are not checked.
 */
int ihala_connect(struct ihala_client *c, int timeout_ms);

/* Called once per wait when the broker has not answered for about a second (it keeps being
 * retried until the call's timeout): a tool says so ("connecting to ... (retrying)"). NULL:
 * only logged (info). */
void ihala_on_connecting(struct ihala_client *c, void (*cb)(void *arg, const char *endpoint),
                         void *arg);

/* The broker's largest frame body: the Welcome's limit, or IHALA_DEFAULT_MAX_FRAME before
 * the first Welcome. A message whose Submit frame is larger is refused before it is queued. */
#define IHALA_DEFAULT_MAX_FRAME ((size_t)1 << 20)
size_t ihala_max_frame(const struct ihala_client *c);

/*
 * Whether this client takes the agency's deliveries (the default) or leaves them to another
 * process of the node (on = 0). Taking them locks the node's inbox: IHALA_EIO (with
 * ihala_errmsg) when another process takes them already.
 */
int ihala_take_deliveries(struct ihala_client *c, int on);

/* Frames from the broker that did not decode (each is logged as a warning and dropped). */
uint64_t ihala_frames_dropped(const struct ihala_client *c);

/* The Welcome of the current session, or NULL. Owned by the client. */
const Ihala__V2__Welcome *ihala_welcome(const struct ihala_client *c);

struct ihala_receipt {
	Ihala__V2__ReceiptStatus status;
	uint64_t seq;
	uint8_t leaf_hash[MERKLE_HASH_LEN];
	int error; /* for REFUSED: the negative code */
	char message_id[ID_MAX + 1];
	char text[256]; /* for REFUSED: the broker's sentence */
};

/*
 * Submit one envelope. The envelope is the full message, personal fields in clear: for a
 * referral, status update, outcome or note the node checks the personal fields
 * (personal_validate: case id, codes, UTF-8, the consent covering what is carried; refused
 * here, nothing queued), seals them (docs/SEALING.md) to the other party of the referral
 * (env->to, else a referral's receiving_agency, else the broker's answer to a query), to this
 * agency (encryption_cert) and to the configured custodians, each certificate from the
 * broker's directory judged by this node (ihala_directory_pick; picks kept for the session),
 * and queues the clear part with the sealed part: nothing personal is kept in clear. A
 * message with personal fields therefore needs the broker (directory, query) to be queued;
 * an agency without a valid certificate is refused with IHALA_ECERT (or IHALA_EREVOKED),
 * naming it. A refusal by the node's own checks (a message error code) fills rc as a
 * broker's REFUSED receipt would (rc->text the sentence). An empty env->message_id is replaced by a
 * new random one (the envelope is modified; the string it points to is then owned by the client
 * until ihala_close). Stored in the outbox, sent, and the receipt awaited up to timeout_ms. Returns
 * 0 for ACCEPTED and DUPLICATE (rc->status says which), the refusal code for REFUSED (rc->text says
 * why; the envelope left the outbox for the rejected list: fix it and submit again, or see
 * ihala_rejected_*), or IHALA_EUNREACHABLE / IHALA_ETIMEDOUT when no receipt came: the envelope
 * stays in the outbox and goes out with the next ihala_flush_outbox or submit. An envelope whose
 * Submit frame is over ihala_max_frame is refused at once with IHALA_ETOOLARGE and never queued.
 *
 * Every refusal but the transient ones (SHUTTING_DOWN, OVERLOADED: sent again later) is
 * final: the message leaves the outbox at once for the rejected list, whoever sent it (this
 * call, a flush, the resend of a new session), so it never holds up the ones behind it.
 */
int ihala_submit(struct ihala_client *c, Ihala__V2__Envelope *env, int timeout_ms,
                 struct ihala_receipt *rc);

/* Send everything waiting in the outbox and wait (up to timeout_ms) for the receipts.
 * *left (may be NULL) gets how many are still waiting. */
int ihala_flush_outbox(struct ihala_client *c, int timeout_ms, size_t *left);

/* Number of envelopes waiting in the outbox. */
int ihala_outbox_count(struct ihala_client *c, size_t *n);

/* The node's local store (outbox, rejected list, inbox), borrowed for the client's life:
 * for listing and managing the outbox (clients/localstore.h). */
struct localstore *ihala_store(struct ihala_client *c);

struct ihala_delivery {
	uint64_t seq;
	uint8_t *entry; /* the encoded LogEntry as logged (malloc'd, owned by the delivery) */
	size_t entry_len;
	Ihala__V2__LogEntry *log; /* decoded entry (owned by the delivery) */
	/* Decoded envelope for SUBMISSION entries, else NULL: the clear part merged with the
	 * opened sealed part when open_err is 0, the clear part alone otherwise. */
	Ihala__V2__Envelope *envelope;
	uint8_t *sealed; /* the sealed part as delivered (malloc'd, owned), NULL when none */
	size_t sealed_len;
	/*
	 * 0 when the sealed part was opened and merged, or there is none. Else why not:
	 * IHALA_ESEALRECIP (none of our keys is a recipient), IHALA_ESEALAUTH (tampered),
	 * IHALA_ESEALFORM (not a sealed part, or not a Sealed message inside), IHALA_ESEALBIND
	 * (it belongs to another message, or differs from the hash the log committed to),
	 * IHALA_ESEALCONTENT (a field not sealed, an undeclared category, invalid content):
	 * for these the node has queued an Unreadable to the sender; IHALA_EERASED (the sealed
	 * part was erased), IHALA_ECONFIG (this node has no encryption key). The application
	 * still acks the delivery.
	 */
	int open_err;
};

/*
 * The next delivery not yet taken by the application: first what the local inbox holds
 * (from an earlier run), then what the broker sends, waiting up to timeout_ms
 * (IHALA_ETIMEDOUT when none came). Release it with ihala_delivery_release. The broker
 * hears nothing until ihala_ack.
 *
 * Sealed parts: the inbox keeps the sealed form; it is opened here, on every read (see
 * open_err). An ERASURE entry's seqs are erased from this node's store (inbox sealed parts,
 * journal records) before the entry is handed over: ack it as any other.
 */
int ihala_next_delivery(struct ihala_client *c, int timeout_ms, struct ihala_delivery *d);
void ihala_delivery_release(struct ihala_delivery *d);

/* The application has taken `seq`: recorded durably, then acknowledged to the broker. */
int ihala_ack(struct ihala_client *c, uint64_t seq);

/* State and history of a referral this agency is party to. *out: ihala_state_free.
 * What waits in the outbox is sent and receipted first (up to half the timeout), so a
 * referral this node just queued is known to the broker when the query goes. */
int ihala_query(struct ihala_client *c, const char *referral_id, int timeout_ms,
                Ihala__V2__ReferralState **out);
void ihala_state_free(Ihala__V2__ReferralState *st);

/*
 * Auditors: stream the log from `from` to `to` (0: the end). cb is called per entry in seq
 * order (entry bytes valid during the call) and returns 0 to go on, non-zero to stop. With
 * `follow` it goes on with new entries until cb stops it or the session ends.
 */
typedef int (*ihala_entry_cb)(void *arg, uint64_t seq, const uint8_t *entry, size_t len);
int ihala_replay(struct ihala_client *c, uint64_t from, uint64_t to, int follow, ihala_entry_cb cb,
                 void *arg, int timeout_ms);

struct ihala_proof {
	uint64_t seq;
	uint64_t tree_size;
	uint8_t leaf_hash[MERKLE_HASH_LEN];
	uint8_t root[MERKLE_HASH_LEN];
	size_t path_len;
	char *checkpoint; /* the signed checkpoint it was verified against (malloc'd) */
};

/*
 * Fetch an inclusion proof for `seq` (or, when seq is 0, for this agency's submission
 * `message_id`) against the broker's latest signed checkpoint, and verify it here: the
 * checkpoint's signature (with the broker's key from `verifier_key`, a PEM public key path
 * or a C2SP verifier key string; NULL: cfg->checkpoint_key; neither: IHALA_ECONFIG), its
 * consistency with the last checkpoint this node kept (which it then replaces), and the
 * audit path. 0 when everything verifies; IHALA_EPROOF, IHALA_ESIGNATURE,
 * IHALA_EINCONSISTENT otherwise; IHALA_ENOTFOUND when the broker has no such entry or no
 * checkpoint covers it yet. p->checkpoint: free().
 */
int ihala_prove(struct ihala_client *c, uint64_t seq, const char *message_id,
                const char *verifier_key, int timeout_ms, struct ihala_proof *p);

/*
 * The directory (docs/SEALING.md): the encryption certificate this node seals to for an
 * agency, chosen by the node, not by the broker.
 */
/* Most certificates taken for one agency (the broker's AGENCY_ENC_CERTS_MAX). */
#define IHALA_DIRECTORY_CERTS_MAX 16

struct ihala_enc_cert {
	X509 *cert;              /* the certificate chosen; owned (ihala_enc_cert_release) */
	char subject[256];       /* its subject, one line (RFC 2253) */
	char serial[2 * 20 + 1]; /* its serial number, lowercase hex */
	int64_t not_before;      /* validity, seconds since the epoch (UTC) */
	int64_t not_after;
	uint8_t sha256[32]; /* SHA-256 of its DER */
	size_t offered;     /* certificates the broker's directory lists for the agency */
};

/*
 * Ask the broker's directory for `agency`'s encryption certificates and pick the one to seal
 * to: the newest that chains to this node's own CA (cfg->ca_file, and cfg->crl_file when
 * set), is valid now, is for key agreement only and names `agency` (seal_cert_pick). The
 * broker vouches for nothing: a certificate it substitutes (another agency's, another CA's,
 * expired, revoked, a signing one) is refused here. 0 and *out filled; IHALA_ECERT (or
 * IHALA_EREVOKED when every one offered is revoked) with ihala_errmsg naming what is wrong
 * with each certificate offered, or that the directory lists none; IHALA_ENOTFOUND when the
 * broker knows no such agency; IHALA_EINVAL for an invalid agency id; IHALA_ECONFIG when
 * the CA file or CRL cannot be loaded; transport errors as for other calls.
 */
int ihala_directory_pick(struct ihala_client *c, const char *agency, int timeout_ms,
                         struct ihala_enc_cert *out);
/* Frees out->cert; the struct may be reused. */
void ihala_enc_cert_release(struct ihala_enc_cert *e);

/*
 * The node's journal (local store): a JSON text per (referral id, log seq) for what this node
 * sent and took from its inbox, so `status` can show the details the broker's history leaves
 * out and `list` knows the node's referrals. Put replaces; iter calls cb in (referral id,
 * seq) order, only `referral_id`'s records when not NULL; cb's strings are valid during the
 * call, cb must not call libihala, and a non-zero return stops the walk and is returned.
 */
int ihala_journal_put(struct ihala_client *c, const char *referral_id, uint64_t seq,
                      const char *json);
typedef int (*ihala_journal_cb)(void *arg, const char *referral_id, uint64_t seq, const char *json);
int ihala_journal_iter(struct ihala_client *c, const char *referral_id, ihala_journal_cb cb,
                       void *arg);
/* The referral ids the journal holds, in order, each once: *ids (n of them) new, freed with
 * ihala_journal_referrals_free(). 0, IHALA_ENOMEM or an error of the store. */
int ihala_journal_referrals(struct ihala_client *c, char ***ids, size_t *n);
void ihala_journal_referrals_free(char **ids, size_t n);

/* The clear envelope of an outbox or rejected record (localstore's env bytes: an encoded
 * Submit). *env: envelope_free(). IHALA_EBADFRAME and the envelope_decode codes. */
int ihala_record_envelope(const void *rec, size_t len, Ihala__V2__Envelope **env);

/* Generate a fresh random message id (32 hex digits) into buf (>= 33 bytes). */
void ihala_new_message_id(char *buf, size_t len);

#endif
