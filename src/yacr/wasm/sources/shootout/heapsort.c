/* heapsort: the language shootout's heapsort: n doubles from its linear congruential
 * generator (IM 139968, IA 3877, IC 29573), sorted in place with a heap. */
#define NAME "heapsort"
#define DEFAULT_N 2000000
#include "bench.h"

#define IM 139968
#define IA 3877
#define IC 29573

static uint32_t last = 42;
static double gen_random(double max) {
    last = (last * IA + IC) % IM;
    return max * last / IM;
}

static void heapsort(uint32_t n, double *ra) {
    uint32_t i, j, ir = n, l = (n >> 1) + 1;
    double rra;
    for (;;) {
        if (l > 1) {
            rra = ra[--l];
        } else {
            rra = ra[ir];
            ra[ir] = ra[1];
            if (--ir == 1) { ra[1] = rra; return; }
        }
        i = l;
        j = l << 1;
        while (j <= ir) {
            if (j < ir && ra[j] < ra[j + 1]) j++;
            if (rra < ra[j]) { ra[i] = ra[j]; j += (i = j); } else j = ir + 1;
        }
        ra[i] = rra;
    }
}

static uint64_t bench(uint32_t n) {
    double *ary = malloc((n + 1) * sizeof(double));
    for (uint32_t i = 1; i <= n; i++) ary[i] = gen_random(1);
    heapsort(n, ary);
    uint64_t c = (uint64_t)(ary[n] * 1e9) + (uint64_t)(ary[n / 2] * 1e9);
    free(ary);
    return c;
}
