/* The smallest useful WASI command: the wasm counterpart of busybox `true` in the boot
 * benchmarks, and the module of `make demo`. */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello from wasm: %s\n", argc > 0 ? argv[0] : "?");
    return 0;
}
