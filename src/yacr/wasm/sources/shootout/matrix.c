/* matrix: the shootout's matrix multiplication: two 30x30 integer matrices multiplied
 * n times. */
#define NAME "matrix"
#define DEFAULT_N 60000
#include "bench.h"

#define SIZE 30

static void mmult(int a[SIZE][SIZE], int b[SIZE][SIZE], int c[SIZE][SIZE]) {
    for (int i = 0; i < SIZE; i++)
        for (int j = 0; j < SIZE; j++) {
            int val = 0;
            for (int k = 0; k < SIZE; k++) val += a[i][k] * b[k][j];
            c[i][j] = val;
        }
}

static uint64_t bench(uint32_t n) {
    static int m1[SIZE][SIZE], m2[SIZE][SIZE], mm[SIZE][SIZE];
    int count = 1;
    for (int i = 0; i < SIZE; i++)
        for (int j = 0; j < SIZE; j++) m1[i][j] = m2[i][j] = count++;
    uint64_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        m1[i % SIZE][0] = (int)i;
        mmult(m1, m2, mm);
        c += (uint32_t)mm[0][0] + (uint32_t)mm[SIZE - 1][SIZE - 1];
    }
    return c;
}
