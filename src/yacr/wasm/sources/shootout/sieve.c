/* sieve: the shootout's sieve of Eratosthenes over 8192 flags, repeated n times. */
#define NAME "sieve"
#define DEFAULT_N 30000
#include "bench.h"

static uint64_t bench(uint32_t n) {
    static char flags[8192 + 1];
    uint64_t count = 0;
    while (n--) {
        count = 0;
        for (int i = 2; i <= 8192; i++) flags[i] = 1;
        for (int i = 2; i <= 8192; i++)
            if (flags[i]) {
                for (int k = i + i; k <= 8192; k += i) flags[k] = 0;
                count++;
            }
    }
    return count;
}
