/* switch2: a loop driving a 32-case switch (a small interpreter's dispatch), n steps. */
#define NAME "switch2"
#define DEFAULT_N 50000000
#include "bench.h"

static uint64_t bench(uint32_t n) {
    uint64_t acc = 1;
    uint32_t op = 0;
    for (uint32_t i = 0; i < n; i++) {
        switch (op & 31) {
        case 0: acc += 1; break;           case 1: acc ^= i; break;
        case 2: acc *= 3; break;           case 3: acc -= 7; break;
        case 4: acc += i >> 3; break;      case 5: acc = (acc << 1) | 1; break;
        case 6: acc >>= 1; break;          case 7: acc += 0x55; break;
        case 8: acc ^= acc >> 7; break;    case 9: acc += op; break;
        case 10: acc *= 5; break;          case 11: acc -= i; break;
        case 12: acc ^= 0xabcdef; break;   case 13: acc += acc >> 3; break;
        case 14: acc = ~acc; break;        case 15: acc += 13; break;
        case 16: acc ^= i << 2; break;     case 17: acc *= 7; break;
        case 18: acc -= 99; break;         case 19: acc += i & 0xff; break;
        case 20: acc ^= acc << 5; break;   case 21: acc += 21; break;
        case 22: acc = acc * 9 + 1; break; case 23: acc ^= 0x1234; break;
        case 24: acc += i * 3; break;      case 25: acc -= acc >> 9; break;
        case 26: acc ^= 0xff00ff; break;   case 27: acc += 27; break;
        case 28: acc *= 11; break;         case 29: acc ^= i >> 1; break;
        case 30: acc += 0x1000; break;     default: acc -= 1; break;
        }
        op = op * 1103515245u + 12345u + (uint32_t)acc;
        op >>= 3;
    }
    return acc;
}
