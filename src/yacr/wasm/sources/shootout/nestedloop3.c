/* nestedloop3: nested loops over a small array with loop-carried array reads and writes. */
#define NAME "nestedloop3"
#define DEFAULT_N 500
#include "bench.h"

static uint64_t bench(uint32_t n) {
    static uint32_t a[1024];
    for (int i = 0; i < 1024; i++) a[i] = i;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++)
            for (uint32_t k = 1; k < 1024; k += 1) a[k] += a[k - 1] ^ (i + j);
    uint64_t c = 0;
    for (int i = 0; i < 1024; i++) c += a[i];
    return c;
}
