/* crlwatch.h - the CRL's nextUpdate: in the metrics, and warned about before it locks out
 * every agency. */
#ifndef IHALA_CRLWATCH_H
#define IHALA_CRLWATCH_H

#include <stdint.h>

#include <openssl/ssl.h>

/* Once in the warning window, the warning is repeated this often (and once at expiry). */
#define CRLWATCH_REPEAT_MS (24 * 3600 * 1000ULL)

/*
 * Main thread, at start and after each reload applied: the CRLs of ctx (the context now in
 * force, borrowed for the call) and their file `path` (for the messages; NULL: no CRL).
 * Publishes the earliest nextUpdate as ihala_crl_next_update_seconds, and logs a warning
 * now when it is less than `warn_before_ms` away (0: never warn).
 */
void crlwatch_update(SSL_CTX *ctx, const char *path, uint64_t warn_before_ms, uint64_t now_ms);

/* Main thread, from the timers: repeats the warning every CRLWATCH_REPEAT_MS while in the
 * window, and says once that the CRL has expired when it does. */
void crlwatch_tick(uint64_t now_ms);

#endif
