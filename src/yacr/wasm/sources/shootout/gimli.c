/* gimli: the Gimli 384-bit permutation (24 rounds of SP-box, swaps and round constants),
 * applied n times to a state. */
#define NAME "gimli"
#define DEFAULT_N 2000000
#include "bench.h"

static uint32_t rotl(uint32_t x, int b) { return (x << b) | (x >> (32 - b)); }

static void gimli(uint32_t *s) {
    for (uint32_t round = 24; round > 0; round--) {
        for (int col = 0; col < 4; col++) {
            uint32_t x = rotl(s[col], 24), y = rotl(s[4 + col], 9), z = s[8 + col];
            s[8 + col] = x ^ (z << 1) ^ ((y & z) << 2);
            s[4 + col] = y ^ x ^ ((x | z) << 1);
            s[col] = z ^ y ^ ((x & y) << 3);
        }
        if ((round & 3) == 0) {
            uint32_t t = s[0]; s[0] = s[1]; s[1] = t;
            t = s[2]; s[2] = s[3]; s[3] = t;
        }
        if ((round & 3) == 2) {
            uint32_t t = s[0]; s[0] = s[2]; s[2] = t;
            t = s[1]; s[1] = s[3]; s[3] = t;
        }
        if ((round & 3) == 0) s[0] ^= 0x9e377900u | round;
    }
}

static uint64_t bench(uint32_t n) {
    uint32_t s[12];
    for (int i = 0; i < 12; i++) s[i] = i * 0x9e3779b9u;
    for (uint32_t i = 0; i < n; i++) gimli(s);
    uint64_t c = 0;
    for (int i = 0; i < 12; i++) c = c * 31 + s[i];
    return c;
}
