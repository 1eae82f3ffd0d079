/* base64: encode a pseudo-random buffer to base64 and decode it back, n times. */
#define NAME "base64"
#define DEFAULT_N 3000
#include "bench.h"

static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t encode(const uint8_t *in, size_t len, char *out) {
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63]; out[o++] = tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static size_t decode(const char *in, size_t len, uint8_t *out, const uint8_t *rev) {
    size_t o = 0;
    for (size_t i = 0; i + 3 < len; i += 4) {
        uint32_t v = (uint32_t)rev[(uint8_t)in[i]] << 18 | (uint32_t)rev[(uint8_t)in[i + 1]] << 12 |
                     (uint32_t)rev[(uint8_t)in[i + 2]] << 6 | rev[(uint8_t)in[i + 3]];
        out[o++] = v >> 16;
        if (in[i + 2] != '=') out[o++] = (v >> 8) & 255;
        if (in[i + 3] != '=') out[o++] = v & 255;
    }
    return o;
}

static uint64_t bench(uint32_t n) {
    enum { LEN = 100000 };
    static uint8_t data[LEN], back[LEN];
    static char enc[LEN * 4 / 3 + 8];
    uint8_t rev[256] = {0};
    for (int i = 0; i < 64; i++) rev[(uint8_t)tbl[i]] = (uint8_t)i;
    uint32_t x = 42;
    for (int i = 0; i < LEN; i++) { x = x * 1103515245u + 12345u; data[i] = x >> 24; }
    uint64_t sum = 0;
    for (uint32_t r = 0; r < n; r++) {
        data[r % LEN] ^= (uint8_t)r;
        size_t e = encode(data, LEN, enc);
        size_t d = decode(enc, e, back, rev);
        sum += e + d + back[r % LEN] + (uint8_t)enc[r % e];
    }
    return sum;
}
