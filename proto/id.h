/* id.h - the formats of the ids ihala carries: agency ids, and referral, case and message ids. */
#ifndef IHALA_ID_H
#define IHALA_ID_H

#include <stddef.h>

/*
 * An agency id: 1..ID_AGENCY_MAX characters of a-z, 0-9, '_' and '-'. It names an
 * [agency.ID] section, a certificate's CN or SAN URI, and the sender and recipient of
 * every entry; a buffer for one is ID_AGENCY_MAX + 1 bytes.
 */
#define ID_AGENCY_MAX 32
/*
 * A referral, case or message id: 1..ID_MAX bytes of printable ASCII without spaces; a
 * buffer for one is ID_MAX + 1 bytes.
 */
#define ID_MAX 64

#define ID_STR_(x) #x
#define ID_STR(x) ID_STR_(x)
/* The agency id rule in words, for messages: "1..32 characters of a-z, ...". */
#define ID_AGENCY_RULE "1.." ID_STR(ID_AGENCY_MAX) " characters of a-z, 0-9, '_' and '-'"

/* 1 when the `len` bytes at `s` are an agency id (an embedded NUL is refused), else 0. */
int id_agency_valid(const char *s, size_t len);
/*
 * A clerk id (Envelope.clerk_id): the pseudonym of the person who acted for the agency,
 * 1..ID_CLERK_MAX characters of a-z, 0-9, '_' and '-'; a buffer for one is ID_CLERK_MAX + 1
 * bytes. Never a name.
 */
#define ID_CLERK_MAX 32
#define ID_CLERK_RULE "1.." ID_STR(ID_CLERK_MAX) " characters of a-z, 0-9, '_' and '-'"
/* 1 when the string `s` is a clerk id, else 0. */
int id_clerk_valid(const char *s);

/* 1 when the string `s` is a referral, case or message id, else 0. */
int id_valid(const char *s);

/*
 * Copy the string `src` into `dst` of `size` (> 0) bytes, cut to size - 1 bytes and always
 * terminated (as snprintf "%s" would, without its cost on the writer's path). Returns the
 * length copied.
 */
size_t id_copy(char *dst, size_t size, const char *src);

#endif
