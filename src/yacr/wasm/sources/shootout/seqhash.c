/* seqhash: hash a sequence of counters with a 64-bit multiplicative mixing hash (FNV-1a
 * over the bytes of each word). */
#define NAME "seqhash"
#define DEFAULT_N 100000000
#include "bench.h"

static uint64_t bench(uint32_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = i;
        for (int b = 0; b < 4; b++) {
            h ^= v & 0xff;
            h *= 0x100000001b3ull;
            v >>= 8;
        }
    }
    return h;
}
