/* random: the shootout's random: the linear congruential generator (IM 139968, IA 3877,
 * IC 29573) called n times. */
#define NAME "random"
#define DEFAULT_N 100000000
#include "bench.h"

#define IM 139968
#define IA 3877
#define IC 29573

static uint64_t bench(uint32_t n) {
    uint32_t last = 42;
    double r = 0;
    while (n--) {
        last = (last * IA + IC) % IM;
        r = 100.0 * last / IM;
    }
    return (uint64_t)(r * 1e9);
}
