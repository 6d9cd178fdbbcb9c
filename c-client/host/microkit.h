/* SPDX-License-Identifier: BSD-2-Clause */
/* A host stand-in for libmicrokit's <microkit.h>, just what
 * guest_ram_client.h uses: the call and the message registers go to the
 * Rust side of the host test (c-client/src/lib.rs), which runs the real
 * guest_ram::Server. */
#ifndef MICROKIT_H
#define MICROKIT_H

#include <stdint.h>

typedef unsigned int microkit_channel;
typedef struct {
    uint64_t label;
    uint64_t count;
} microkit_msginfo;

microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo msginfo);
uint64_t microkit_mr_get(uint8_t mr);
void microkit_mr_set(uint8_t mr, uint64_t value);

static inline microkit_msginfo microkit_msginfo_new(uint64_t label, uint16_t count)
{
    microkit_msginfo m = { label, count };
    return m;
}

static inline uint64_t microkit_msginfo_get_label(microkit_msginfo m)
{
    return m.label;
}

static inline uint64_t microkit_msginfo_get_count(microkit_msginfo m)
{
    return m.count;
}

#endif
