/* fib2: the doubly recursive Fibonacci function, fib(n). */
#define NAME "fib2"
#define DEFAULT_N 40
#include "bench.h"

static uint64_t fib(uint32_t n) { return n < 2 ? 1 : fib(n - 1) + fib(n - 2); }

static uint64_t bench(uint32_t n) { return fib(n); }
