/* SPDX-License-Identifier: BSD-2-Clause */
/* The C client's self-test: every op of guest_ram_client.h and one refusal
 * of each kind a client can provoke. See selftest.h. */
#include <microkit.h>
#include "guest_ram_client.h"
#include "selftest.h"

#define BIG 10000u

static uint8_t out[BIG];
static uint8_t back[BIG];

static uint8_t pattern(uint8_t seed, uint32_t i)
{
    return (uint8_t)(i * 31u + seed) ^ (uint8_t)(i >> 9);
}

static void fill_pattern(uint8_t *p, uint32_t n, uint8_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        p[i] = pattern(seed, i);
    }
}

static int is_pattern(const uint8_t *p, uint32_t n, uint8_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] != pattern(seed, i)) {
            return 0;
        }
    }
    return 1;
}

int c_client_selftest(guest_ram_client_t *c, struct c_selftest_layout l, c_selftest_report report, int *total)
{
    int passed = 0, n = 0;
#define CHECK(name, cond)            \
    do {                             \
        int ok_ = (cond) ? 1 : 0;    \
        n++;                         \
        passed += ok_;               \
        report(name, ok_);           \
    } while (0)

    guest_ram_info_t info;
    CHECK("info: buffer size and 3 windows",
          guest_ram_info(c, &info) == GUEST_RAM_OK && info.buffer_len == c->buffer_len
              && info.window_count == 3 && info.max_segments == GUEST_RAM_MAX_SEGMENTS);
    CHECK("ping", guest_ram_ping(c) == GUEST_RAM_OK);

    fill_pattern(out, 100, 1);
    CHECK("write/read 100 bytes", guest_ram_write(c, l.rw, out, 100) == GUEST_RAM_OK
                                      && guest_ram_read(c, l.rw, back, 100) == GUEST_RAM_OK
                                      && is_pattern(back, 100, 1));
    fill_pattern(out, BIG, 2);
    CHECK("chunked write/read larger than the buffer",
          guest_ram_write(c, l.rw + 0x1000, out, BIG) == GUEST_RAM_OK
              && guest_ram_read(c, l.rw + 0x1000, back, BIG) == GUEST_RAM_OK && is_pattern(back, BIG, 2));
    guest_ram_range_t segs[3] = {
        { l.rw + 0x8000, 700 }, { l.rw + 0x9000, 3000 }, { l.rw + 0xc000, 1 },
    };
    fill_pattern(out, 3701, 3);
    CHECK("scatter-gather over 3 segments",
          guest_ram_writev(c, segs, 3, out, 3701) == GUEST_RAM_OK
              && guest_ram_readv(c, segs, 3, back, 3701) == GUEST_RAM_OK && is_pattern(back, 3701, 3));
    int fill_ok = guest_ram_fill(c, l.rw + 0x10000, 5000, 0xa5) == GUEST_RAM_OK
                  && guest_ram_read(c, l.rw + 0x10000, back, 5000) == GUEST_RAM_OK;
    for (uint32_t i = 0; fill_ok && i < 5000; i++) {
        fill_ok = back[i] == 0xa5;
    }
    CHECK("fill", fill_ok);
    CHECK("read from the read-only window", guest_ram_read(c, l.ro, back, 64) == GUEST_RAM_OK);

    /* One refusal of each kind a client can provoke. */
    CHECK("write to the read-only window: NO_PERMISSION",
          guest_ram_write(c, l.ro, out, 8) == GUEST_RAM_NO_PERMISSION);
    CHECK("read outside every window: OUTSIDE_WINDOW",
          guest_ram_read(c, l.outside, back, 8) == GUEST_RAM_OUTSIDE_WINDOW);
    CHECK("read of a non-RAM range: NOT_RAM", guest_ram_read(c, l.not_ram, back, 8) == GUEST_RAM_NOT_RAM);
    uint64_t msg[GUEST_RAM_MSG_WORDS] = { 0 };
    msg[0] = guest_ram_header_word(1);
    msg[1] = l.rw;
    msg[2] = 8;
    msg[3] = 0;
    CHECK("unknown op: UNKNOWN_OP", guest_ram_call_raw(c, 99, msg, 4) == GUEST_RAM_UNKNOWN_OP);
    CHECK("truncated message: MALFORMED", guest_ram_call_raw(c, GUEST_RAM_OP_READ, msg, 3) == GUEST_RAM_MALFORMED);
    msg[0] = guest_ram_header_word(1) + 1; /* version 2 */
    CHECK("version 2: BAD_VERSION", guest_ram_call_raw(c, GUEST_RAM_OP_READ, msg, 4) == GUEST_RAM_BAD_VERSION);
    msg[0] = guest_ram_header_word(1);
    msg[3] = c->buffer_len;
    CHECK("buffer overrun: OUTSIDE_BUFFER",
          guest_ram_call_raw(c, GUEST_RAM_OP_READ, msg, 4) == GUEST_RAM_OUTSIDE_BUFFER);
    msg[1] = UINT64_MAX;
    msg[2] = 2;
    msg[3] = 0;
    CHECK("gpa overflow: OVERFLOW", guest_ram_call_raw(c, GUEST_RAM_OP_READ, msg, 4) == GUEST_RAM_OVERFLOW);
    msg[1] = l.rw;
    msg[2] = 0;
    CHECK("zero length: ZERO_LENGTH", guest_ram_call_raw(c, GUEST_RAM_OP_WRITE, msg, 4) == GUEST_RAM_ZERO_LENGTH);
    msg[0] = guest_ram_header_word(GUEST_RAM_MAX_SEGMENTS + 1);
    CHECK("40 segments: TOO_MANY_SEGMENTS",
          guest_ram_call_raw(c, GUEST_RAM_OP_READV, msg, GUEST_RAM_MSG_WORDS) == GUEST_RAM_TOO_MANY_SEGMENTS);
    CHECK("client: zero length refused before any call", guest_ram_read(c, l.rw, back, 0) == GUEST_RAM_E_ZERO_LENGTH);
    CHECK("client: overflow refused before any call",
          guest_ram_read(c, UINT64_MAX - 3, back, 8) == GUEST_RAM_E_OVERFLOW);
    CHECK("nothing refused changed guest RAM",
          guest_ram_read(c, l.rw, back, 100) == GUEST_RAM_OK && is_pattern(back, 100, 1));
    CHECK("every code has a name", guest_ram_strerror(GUEST_RAM_NO_PERMISSION)[0] == 'w'
                                       && guest_ram_strerror(GUEST_RAM_E_TOO_LARGE)[0] == 't');
#undef CHECK
    *total = n;
    return passed;
}
