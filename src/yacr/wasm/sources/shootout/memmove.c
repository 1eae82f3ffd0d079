/* memmove: overlapping memmove of a 1 MiB buffer by shifting windows, n times. */
#define NAME "memmove"
#define DEFAULT_N 16000
#include "bench.h"

static uint64_t bench(uint32_t n) {
    enum { LEN = 1 << 20 };
    static uint8_t buf[LEN + 4096];
    for (int i = 0; i < LEN + 4096; i++) buf[i] = (uint8_t)(i * 7);
    uint64_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t shift = 1 + (i * 37) % 4000;
        if (i & 1) memmove(buf + shift, buf, LEN);
        else memmove(buf, buf + shift, LEN);
        c += buf[(i * 4099) % LEN];
    }
    return c;
}
