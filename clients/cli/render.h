/* render.h - log entries, deliveries and receipts as JSON (inbox, audit replay and export). */
#ifndef IHALA_RENDER_H
#define IHALA_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ihala.h"
#include "ihala.pb-c.h"

/*
 * Every function returns 0 and a new JSON object in *out, owned by the caller (json_decref),
 * or a negative code from error.h (IHALA_ENOMEM, IHALA_EUTF8, IHALA_EBADFRAME, ...) with
 * *out NULL. Inputs are only read. Field names and enum values follow pbjson (camelCase,
 * "in-progress"); strings stay UTF-8.
 */

/*
 * A LogEntry as pbjson writes it, except that the envelope bytes of a SUBMISSION are decoded
 * (envelope_decode, strict) and shown as "envelope": {...}. Bytes that do not decode stay
 * base64 and an "envelopeError": "CODE_NAME" key says why, so an auditor sees them as they
 * are.
 */
int render_logentry(const Ihala__V2__LogEntry *e, json_t **out);

/* The same from the encoded entry (LogRecord.entry, Deliver.entry). Entry bytes that do not
 * decode give IHALA_EBADFRAME (or IHALA_EUTF8). */
int render_entry_bytes(const uint8_t *buf, size_t len, json_t **out);

/*
 * One inbox line: {"seq", "kind", "sender", "recipient", "brokerTimeMs", and "envelope": {...}
 * for a submission or "event": {...} for a broker-made entry}: the LogEntry's own names, as
 * audit replay and export show them. "kind" is the EntryKind as pbjson names it
 * ("submission", "broker-status", ...). The envelope is the clear part merged with the opened
 * sealed part; when the node could not open it (d->open_err), the clear part alone and
 * "openError": the code's name ("ERASED", "SEAL_AUTH_FAILED", ...).
 */
int render_delivery(const struct ihala_delivery *d, json_t **out);

/* {"messageId", "seq", "leafHash" (hex), "status" ("accepted" or "duplicate")}. */
int render_receipt(const struct ihala_receipt *rc, json_t **out);

/*
 * The referral a rendered line is about (an inbox or journal line: its envelope's referral,
 * status update, outcome or note, else its event's referralId), or NULL. Borrowed from line.
 */
const char *render_line_referral(json_t *line);

#endif
