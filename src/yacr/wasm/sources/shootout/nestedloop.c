/* nestedloop: the shootout's six nested loops counting to n each: x incremented n^6 times
 * (the loop bound is opaque, so the compiler cannot fold the count). */
#define NAME "nestedloop"
#define DEFAULT_N 34
#include "bench.h"

static uint64_t bench(uint32_t n) {
    volatile uint32_t vn = n;
    uint32_t m = vn;
    uint64_t x = 0;
    for (uint32_t a = 0; a < m; a++)
        for (uint32_t b = 0; b < m; b++)
            for (uint32_t c = 0; c < m; c++)
                for (uint32_t d = 0; d < m; d++)
                    for (uint32_t e = 0; e < m; e++)
                        for (uint32_t f = 0; f < m; f++) x += (a ^ f) & 1;
    return x;
}
