/* nestedloop2: three nested loops whose innermost body does a data-dependent update of an
 * accumulator (multiply-add with the loop indices). */
#define NAME "nestedloop2"
#define DEFAULT_N 700
#include "bench.h"

static uint64_t bench(uint32_t n) {
    uint64_t x = 1;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++)
            for (uint32_t k = 0; k < n; k++) x = x * 3 + (i ^ j ^ k);
    return x;
}
