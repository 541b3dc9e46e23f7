/* endian.h - big-endian integers in keys and on the wire (store keys, frame length prefixes). */
#ifndef IHALA_ENDIAN_H
#define IHALA_ENDIAN_H

#include <stdint.h>

static inline void
be32enc(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t
be32dec(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void
be64enc(uint8_t *p, uint64_t v)
{
	be32enc(p, (uint32_t)(v >> 32));
	be32enc(p + 4, (uint32_t)v);
}

static inline uint64_t
be64dec(const uint8_t *p)
{
	return (uint64_t)be32dec(p) << 32 | be32dec(p + 4);
}

#endif
