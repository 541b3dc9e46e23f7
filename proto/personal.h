/* personal.h - which fields of a message are sealed, split/merge, and their validation at nodes. */
#ifndef IHALA_PERSONAL_H
#define IHALA_PERSONAL_H

#include <stddef.h>
#include <stdint.h>

#include "ihala.pb-c.h"

/*
 * The one rule of docs/SEALING.md, as a table (personal.c, personal_fields): a Referral's
 * survivor (whole, case_id included), reason, referring_officer and notes; a StatusUpdate's
 * business_status, reason, note and its outcome's date and notes; an Outcome's date and
 * notes; a Note's text. Everything else is clear. Erase and Unreadable have no sealed part.
 *
 * The sending node: personal_validate() the full envelope (personal fields in clear, as the
 * command line builds it), personal_split() it into the Sealed content to seal, seal that,
 * then personal_clear() encodes the clear part (personal fields removed, data_declared and
 * sealed_sha256 set). The receiving node: open the sealed part, personal_merge() it into
 * the clear envelope (which checks the binding, the fields and the categories, and
 * validates the result).
 *
 * Every function returns 0 or a negative code of proto/error.h and, when err is not NULL,
 * writes a sentence for people into err (errlen bytes) that names fields, never quotes
 * their content.
 */

/* 1 when messages of env's kind carry personal fields (referral, status update, outcome,
 * note), else 0. */
int personal_kind(const Ihala__V2__Envelope *env);

/* The referral id of a Referral, StatusUpdate, Outcome or Note envelope; "" for the other
 * kinds. Static storage or env's own string; never NULL. */
const char *personal_referral_id(const Ihala__V2__Envelope *env);

/* One row of the table: the message type, the field, and whether the field is a message
 * split by its own rows (StatusUpdate.outcome) rather than sealed whole. */
struct personal_field {
	const ProtobufCMessageDescriptor *msg;
	const char *name;
	int split;
};
extern const struct personal_field personal_fields[];
extern const size_t personal_n_fields;

/*
 * The data categories (proto/consent's table) of the sealed fields `r` carries, each once,
 * in enum order, into out (cap >= 8 holds all). Returns how many.
 */
size_t personal_declared(const Ihala__V2__Referral *r, Ihala__V2__DataCategory *out, size_t cap);

/*
 * The checks on personal fields the broker made before sealing (the node makes them now):
 * for a Referral, a given consent covering the recipient (`to`, else receiving_agency),
 * survivor.case_id present (1..64 printable ASCII), at most 64 injury codes
 * and 64 amputations, consent.recorded_by a
 * pseudonymous staff id (1..64 printable ASCII) when set, a given consent covering every
 * category the referral carries (consent_uncovered); for every kind, valid UTF-8.
 * IHALA_ESCHEMA, IHALA_EUTF8, IHALA_ECONSENT, IHALA_EINVAL.
 */
int personal_validate(const Ihala__V2__Envelope *env, char *err, size_t errlen);

/*
 * The Sealed content of the full envelope `env`: message_id, the referral id, `sender`, and
 * the kind holding only its personal fields, encoded. *out: new (free()), *len bytes; NULL
 * and 0 when the message has no personal field set (nothing to seal). IHALA_EINVAL for a
 * kind without personal fields, IHALA_ENOMEM.
 */
int personal_split(const Ihala__V2__Envelope *env, const char *sender, uint8_t **out, size_t *len);

/*
 * The clear part of the full envelope `env`, encoded: its personal fields removed,
 * data_declared set (for a Referral, personal_declared(); none for the other kinds) and
 * sealed_sha256 set to the 32 bytes at sha256 (NULL: none). *out: new (free()). IHALA_ENOMEM.
 */
int personal_clear(const Ihala__V2__Envelope *env, const uint8_t *sha256, uint8_t **out,
                   size_t *len);

/*
 * Merge the opened Sealed content (plain, len bytes) into the clear envelope `clear`
 * (decoded from the log entry; `sender` the entry's sender). *merged: a new envelope
 * (envelope_free()) holding both. IHALA_ESEALFORM when plain is not a Sealed message,
 * IHALA_ESEALBIND when its message_id, referral id or sender differ from the clear part's
 * or its kind is another, IHALA_ESEALCONTENT when it carries a field that is not sealed,
 * a category data_declared does not declare, or fails personal_validate(); IHALA_ENOMEM.
 */
int personal_merge(const Ihala__V2__Envelope *clear, const char *sender, const uint8_t *plain,
                   size_t len, Ihala__V2__Envelope **merged, char *err, size_t errlen);

#endif
