/* Shared driver of yacr's shootout programs, written for yacr from the published
 * descriptions of the benchmarks in WAMR's and sightglass's "shootout" tables.
 * Each program defines `static uint64_t bench(uint32_t n)` (n scales the work) and
 * DEFAULT_N; main times bench() with the monotonic clock and prints
 * "<name> checksum=<c> ms=<t>", so native and wasm runs compare compute time only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t bench(uint32_t n);

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : DEFAULT_N;
    double t = now_ms();
    uint64_t c = bench(n);
    t = now_ms() - t;
    printf("%s checksum=%llu ms=%.3f\n", NAME, (unsigned long long)c, t);
    return 0;
}
