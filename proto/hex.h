/* hex.h - hexadecimal digits: the one reader and writer of them (key ids, fingerprints, hashes). */
#ifndef IHALA_HEX_H
#define IHALA_HEX_H

#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit (either case), or -1 when c is not one. */
int hex_digit(int c);

/* Writes the 2 * n lowercase hex digits of the n bytes at b, then a NUL, to out. */
void hex_encode(const uint8_t *b, size_t n, char *out);

#endif
