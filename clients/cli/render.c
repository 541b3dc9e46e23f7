/* render.c - JSON views of log entries, deliveries and receipts for the ihala tool. */
#include "render.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "hex.h"
#include "pbjson.h"

/* Decode envelope bytes into a JSON object; 0 or a negative code. */
static int
envelope_json(const uint8_t *buf, size_t len, json_t **out)
{
	Ihala__V2__Envelope *env = NULL;
	int err;

	*out = NULL;
	if ((err = envelope_decode(buf, len, &env)) != 0) {
		return err;
	}
	err = pbjson_to_json(&env->base, 0, out);
	envelope_free(env);
	return err;
}

static int
set_new(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0) {
		return IHALA_ENOMEM;
	}
	return 0;
}

int
render_logentry(const Ihala__V2__LogEntry *e, json_t **out)
{
	json_t *j = NULL, *ej = NULL;
	int err;

	*out = NULL;
	if (e == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = pbjson_to_json(&e->base, 0, &j)) != 0) {
		return err;
	}
	if (e->envelope.len > 0) {
		err = envelope_json(e->envelope.data, e->envelope.len, &ej);
		if (err == 0) {
			err = set_new(j, "envelope", ej);
		} else if (err != IHALA_ENOMEM) {
			/* keep pbjson's base64 and say why it is not shown decoded */
			err = set_new(j, "envelopeError", json_string(ihala_errname(err)));
		}
		if (err != 0) {
			json_decref(j);
			return err;
		}
	}
	*out = j;
	return 0;
}

int
render_entry_bytes(const uint8_t *buf, size_t len, json_t **out)
{
	Ihala__V2__LogEntry *e = NULL;
	int err;

	*out = NULL;
	if ((err = logentry_decode(buf, len, &e)) != 0) {
		return err;
	}
	err = render_logentry(e, out);
	logentry_free(e);
	return err;
}

int
render_delivery(const struct ihala_delivery *d, json_t **out)
{
	const Ihala__V2__LogEntry *e = d->log;
	Ihala__V2__LogEntry *owned = NULL;
	json_t *j = NULL, *body = NULL;
	char kind[64];
	int err;

	*out = NULL;
	if (e == NULL) {
		if (d->entry == NULL) {
			return IHALA_EINVAL;
		}
		if ((err = logentry_decode(d->entry, d->entry_len, &owned)) != 0) {
			return err;
		}
		e = owned;
	}
	if (pbjson_enum_to_name(&ihala__v2__entry_kind__descriptor, e->kind, kind, sizeof(kind)) !=
	    0) {
		snprintf(kind, sizeof(kind), "%d", (int)e->kind);
	}
	if ((j = json_object()) == NULL) {
		err = IHALA_ENOMEM;
		goto fail;
	}
	if ((err = set_new(j, "seq", json_integer((json_int_t)d->seq))) != 0 ||
	    (err = set_new(j, "kind", json_string(kind))) != 0 ||
	    (err = set_new(j, "sender", json_string(e->sender))) != 0 ||
	    (err = set_new(j, "recipient", json_string(e->recipient))) != 0 ||
	    (err = set_new(j, "brokerTimeMs", json_integer((json_int_t)e->broker_time_ms))) != 0) {
		/* json_string refuses invalid UTF-8; frame decoding already checked it */
		goto fail;
	}
	if (d->envelope != NULL) {
		if ((err = pbjson_to_json(&d->envelope->base, 0, &body)) != 0) {
			goto fail;
		}
		err = set_new(j, "envelope", body);
	} else if (e->envelope.len > 0) {
		if ((err = envelope_json(e->envelope.data, e->envelope.len, &body)) != 0) {
			goto fail;
		}
		err = set_new(j, "envelope", body);
	} else if (e->event != NULL) {
		if ((err = pbjson_to_json(&e->event->base, 0, &body)) != 0) {
			goto fail;
		}
		err = set_new(j, "event", body);
	}
	if (err != 0) {
		goto fail;
	}
	logentry_free(owned);
	*out = j;
	return 0;
fail:
	json_decref(j);
	logentry_free(owned);
	return err;
}

int
render_receipt(const struct ihala_receipt *rc, json_t **out)
{
	char leaf[2 * MERKLE_HASH_LEN + 1];
	const char *status;
	json_t *j;
	int err;

	*out = NULL;
	hex_encode(rc->leaf_hash, MERKLE_HASH_LEN, leaf);
	switch (rc->status) {
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED:
		status = "accepted";
		break;
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE:
		status = "duplicate";
		break;
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED:
		status = "refused";
		break;
	default:
		status = "unspecified";
		break;
	}
	if ((j = json_object()) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((err = set_new(j, "messageId", json_string(rc->message_id))) != 0 ||
	    (err = set_new(j, "seq", json_integer((json_int_t)rc->seq))) != 0 ||
	    (err = set_new(j, "leafHash", json_string(leaf))) != 0 ||
	    (err = set_new(j, "status", json_string(status))) != 0) {
		json_decref(j);
		return err;
	}
	*out = j;
	return 0;
}

const char *
render_line_referral(json_t *line)
{
	static const char *kinds[] = {"referral", "statusUpdate", "outcome",
	                              "note",     "erase",        "unreadable"};
	json_t *env = json_object_get(line, "envelope"), *ev = json_object_get(line, "event");
	const char *rid;
	size_t i;

	for (i = 0; env != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		rid = json_string_value(
		    json_object_get(json_object_get(env, kinds[i]), "referralId"));
		if (rid != NULL && rid[0] != '\0') {
			return rid;
		}
	}
	rid = json_string_value(json_object_get(ev, "referralId"));
	return rid != NULL && rid[0] != '\0' ? rid : NULL;
}
