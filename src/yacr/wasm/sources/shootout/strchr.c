/* strchr: find every occurrence of a few characters in a 64 KiB string with strchr,
 * n times. */
#define NAME "strchr"
#define DEFAULT_N 30000
#include "bench.h"

static uint64_t bench(uint32_t n) {
    enum { LEN = 1 << 16 };
    static char s[LEN + 1];
    uint32_t x = 7;
    for (int i = 0; i < LEN; i++) { x = x * 1664525u + 1013904223u; s[i] = 'a' + (x >> 27) % 26; }
    s[LEN] = 0;
    volatile char needles[4] = {'q', 'z', 'x', 'j'};
    uint64_t c = 0;
    for (uint32_t r = 0; r < n; r++) {
        char ch = needles[r & 3];
        for (const char *p = strchr(s, ch); p; p = strchr(p + 1, ch)) c += (uint64_t)(p - s);
    }
    return c;
}
