/* fuzz.h - what every fuzz target shares: the libFuzzer entry points, invariant checks, test key.
 */
#ifndef IHALA_FUZZ_H
#define IHALA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * Each tests/fuzz/fuzz_NAME.c defines LLVMFuzzerTestOneInput (and may define
 * LLVMFuzzerInitialize). It is linked either with libFuzzer (clang,
 * build-fuzz/, `make fuzz`) or with tests/fuzz/replay.c, a main() that runs
 * the committed corpus and regression inputs once each (gcc, `make test`).
 * The input bytes are only read; the target must not keep them.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant the code under test promises: abort (a crash the fuzzer records). */
#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The checkpoint key of fuzz_checkpoint and of the seeds made by mkseeds:
 * the Ed25519 private key (RFC 8032 §7.1, TEST 1) under key name FUZZ_KEY_NAME.
 * A test key, never used by a broker.
 */
#define FUZZ_KEY_NAME "ihala.fuzz/log"
static const uint8_t fuzz_ed25519_seed[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};

#endif
