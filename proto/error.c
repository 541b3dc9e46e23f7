/* error.c - names and sentences of the error codes in error.h. */
#include "error.h"

#include <stddef.h>

struct errdesc {
	int code;
	const char *name;
	const char *text;
};

/* Sentences say what went wrong first and, where it helps, what to do. */
static const struct errdesc errors[] = {
    {IHALA_OK, "OK", "success"},
    {IHALA_EINTERNAL, "INTERNAL", "internal error (a bug: please report it with the log)"},
    {IHALA_ENOMEM, "NO_MEMORY", "out of memory"},
    {IHALA_EIO, "IO", "input/output error"},
    {IHALA_ETLS, "TLS", "TLS failure"},
    {IHALA_EZMQ, "ZMQ", "ZeroMQ socket failure"},
    {IHALA_ESTORE, "STORE", "local store (LMDB) failure"},
    {IHALA_ECONFIG, "CONFIG", "invalid configuration"},
    {IHALA_EINVAL, "INVALID_ARGUMENT", "invalid argument"},
    {IHALA_ETIMEDOUT, "TIMEOUT", "timed out"},
    {IHALA_EUNREACHABLE, "UNREACHABLE",
     "broker unreachable (check the endpoint and that the broker runs)"},
    {IHALA_ECLOSED, "CLOSED", "session closed"},
    {IHALA_EAGAIN, "AGAIN", "try again later"},
    {IHALA_EKEYPERM, "KEY_PERMISSIONS",
     "private key is readable by group or others (chmod 600 it)"},
    {IHALA_EJSON, "JSON", "invalid JSON input"},
    {IHALA_ENOSPACE, "NO_SPACE", "no space left on the disk (free some and try again)"},

    {IHALA_EBADFRAME, "BAD_FRAME", "frame could not be decoded"},
    {IHALA_EFRAMESIZE, "FRAME_TOO_LARGE", "frame exceeds the maximum frame size"},
    {IHALA_EUNKNOWNFRAME, "UNKNOWN_FRAME", "unknown frame type"},
    {IHALA_ENOTAUTH, "NOT_AUTHENTICATED", "session is not authenticated"},
    {IHALA_EUNKNOWNAGENCY, "UNKNOWN_AGENCY", "certificate does not name a configured agency"},
    {IHALA_EFINGERPRINT, "FINGERPRINT_MISMATCH",
     "certificate does not match the agency's pinned fingerprint"},
    {IHALA_ECERT, "CERTIFICATE_REJECTED", "certificate rejected"},
    {IHALA_EHANDSHAKE, "HANDSHAKE_FAILED", "TLS handshake failed or timed out"},
    {IHALA_ESESSIONS, "TOO_MANY_SESSIONS", "too many sessions, try again later"},
    {IHALA_EPROTOCOL, "PROTOCOL", "frame not allowed at this point of the session"},
    {IHALA_ERESET, "SESSION_RESET", "session reset by the broker; reconnect"},
    {IHALA_ESHUTDOWN, "SHUTTING_DOWN", "broker is shutting down; retry later"},
    {IHALA_EREVOKED, "CERTIFICATE_REVOKED", "certificate has been revoked"},
    {IHALA_EVERSIONPROTO, "UNSUPPORTED_VERSION",
     "the other side speaks another protocol version (this one speaks ihala/2)"},

    {IHALA_ESCHEMA, "SCHEMA", "message is missing a required field or has an invalid value"},
    {IHALA_EUTF8, "INVALID_UTF8", "text field is not valid UTF-8"},
    {IHALA_EFROM, "FROM_MISMATCH", "sender does not match the authenticated agency"},
    {IHALA_ERECIPIENT, "UNKNOWN_RECIPIENT", "recipient is not a configured agency"},
    {IHALA_EFORBIDDEN, "FORBIDDEN",
     "this agency may not send this kind of message to that recipient"},
    {IHALA_ENOTPARTY, "NOT_PARTY", "agency is not a party to this referral"},
    {IHALA_ETRANSITION, "INVALID_TRANSITION",
     "status change not allowed from the referral's current status"},
    {IHALA_EOUTCOME, "OUTCOME_REQUIRED", "completed and failed need an outcome"},
    {IHALA_ECONSENT, "CONSENT_MISSING",
     "referral has no recorded consent covering the receiving agency, the data it carries, "
     "or (onward) within its parent's"},
    {IHALA_ENOREFERRAL, "UNKNOWN_REFERRAL", "no such referral"},
    {IHALA_EREFEXISTS, "REFERRAL_EXISTS", "a referral with this id already exists"},
    {IHALA_EMSGID, "MESSAGE_ID_CONFLICT", "message id already used for different content"},
    {IHALA_EQUEUEFULL, "QUEUE_FULL", "recipient's queue is full; retry later"},
    {IHALA_ESTOREFULL, "STORE_FULL",
     "broker store is full; submissions are refused until it is grown"},
    {IHALA_EREADONLY, "READ_ONLY", "this agency may read but not submit"},
    {IHALA_EPARENT, "INVALID_PARENT",
     "onward referral not allowed from the parent referral's state"},
    {IHALA_ETOOLARGE, "TOO_LARGE", "message or field exceeds its size limit"},
    {IHALA_EOVERLOAD, "OVERLOADED", "broker is overloaded; retry later"},
    {IHALA_EQUOTA, "QUOTA_EXCEEDED", "the referral's quota of message bytes is used up"},
    {IHALA_EERASED, "ERASED", "the referral's sealed parts were erased"},
    {IHALA_ESEALHASH, "SEALED_MISMATCH", "sealed part does not match the envelope's sealed_sha256"},
    {IHALA_ESEALRECIP, "SEAL_NOT_RECIPIENT",
     "none of our encryption keys can open the sealed part"},
    {IHALA_ESEALAUTH, "SEAL_AUTH_FAILED",
     "sealed part failed authentication (altered, or a wrong key)"},
    {IHALA_ESEALFORM, "SEAL_MALFORMED", "sealed part is not a well-formed AuthEnvelopedData"},
    {IHALA_ESEALBIND, "SEAL_MISMATCH",
     "sealed content belongs to another message (message id, referral or sender differ)"},
    {IHALA_ESEALCONTENT, "SEAL_INVALID_CONTENT",
     "sealed content is invalid or carries an undeclared data category"},

    {IHALA_ENOTFOUND, "NOT_FOUND", "no such entry"},
    {IHALA_EPROOF, "BAD_PROOF", "proof does not verify"},
    {IHALA_ESIGNATURE, "BAD_SIGNATURE", "signature does not verify"},
    {IHALA_EINCONSISTENT, "INCONSISTENT_LOG",
     "log is inconsistent with an earlier checkpoint (forked or rewritten)"},
    {IHALA_EVERSION, "STORE_VERSION", "store has an unknown format version"},
    {IHALA_ETAMPER, "TAMPERED", "log entry does not match its recorded hash"},
};

static const struct errdesc *
find(int err)
{
	size_t i;

	for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (errors[i].code == err) {
			return &errors[i];
		}
	}
	return NULL;
}

const char *
ihala_strerror(int err)
{
	const struct errdesc *d = find(err);

	return d != NULL ? d->text : "unknown error";
}

const char *
ihala_errname(int err)
{
	const struct errdesc *d = find(err);

	return d != NULL ? d->name : "UNKNOWN";
}

int
ihala_err_known(int err)
{
	return find(err) != NULL;
}
