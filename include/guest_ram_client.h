/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * guest_ram_client.h: guest-ram's copy service for C protection domains.
 *
 * Header-only, over libmicrokit: include <microkit.h> first. A driver PD
 * that never maps guest RAM asks the VMM for copies between guest RAM and
 * a buffer it shares with the VMM, over a protected procedure call.
 *
 *     guest_ram_client_t vmm = GUEST_RAM_CLIENT(VMM_CH, buffer_vaddr, buffer_size);
 *     char header[16];
 *     int err = guest_ram_read(&vmm, desc_gpa, header, sizeof header);
 *     if (err) microkit_dbg_puts(guest_ram_strerror(err));
 *     err = guest_ram_write(&vmm, status_gpa, &status, 1);
 *
 * The wire format is the one of guest_ram::protocol (Rust): the op in the
 * message label, little-endian 64-bit message registers, the status in the
 * reply label and header. This header is hand-written; its host test
 * (c-client/, run by `make test`) compiles it and runs every op and every
 * refusal against the Rust server, so the two cannot drift apart unseen.
 *
 * Return codes: 0 is success; 1..12 are the VMM's refusals (enum
 * guest_ram_status); negative values are found by the client before or
 * after the call (enum guest_ram_client_error). guest_ram_strerror names
 * each. A transfer larger than the buffer takes several calls; a refusal
 * part-way leaves the earlier ones done.
 */
#ifndef GUEST_RAM_CLIENT_H
#define GUEST_RAM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "guest_ram_client.h: the wire format is little-endian"
#endif

#define GUEST_RAM_VERSION 1u
#define GUEST_RAM_MSG_WORDS 120u
#define GUEST_RAM_MAX_SEGMENTS ((GUEST_RAM_MSG_WORDS - 1u) / 3u) /* 39 */
#define GUEST_RAM_MAX_WINDOWS 8u
#define GUEST_RAM_PERM_READ 1u
#define GUEST_RAM_PERM_WRITE 2u

/* Ops, in the request label (guest_ram::protocol::Op). */
enum guest_ram_op {
    GUEST_RAM_OP_INFO = 1,
    GUEST_RAM_OP_READ = 2,
    GUEST_RAM_OP_WRITE = 3,
    GUEST_RAM_OP_READV = 4,
    GUEST_RAM_OP_WRITEV = 5,
    GUEST_RAM_OP_FILL = 6,
    GUEST_RAM_OP_PING = 7,
};

/* The VMM's answers, in the reply label and header (protocol::Status). */
enum guest_ram_status {
    GUEST_RAM_OK = 0,
    GUEST_RAM_MALFORMED = 1,
    GUEST_RAM_BAD_VERSION = 2,
    GUEST_RAM_UNKNOWN_OP = 3,
    GUEST_RAM_UNKNOWN_CLIENT = 4,
    GUEST_RAM_ZERO_LENGTH = 5,
    GUEST_RAM_OVERFLOW = 6,
    GUEST_RAM_OUTSIDE_WINDOW = 7,
    GUEST_RAM_NO_PERMISSION = 8,
    GUEST_RAM_NOT_RAM = 9,
    GUEST_RAM_OUTSIDE_BUFFER = 10,
    GUEST_RAM_TOO_MANY_SEGMENTS = 11,
    GUEST_RAM_INTERNAL = 12,
    GUEST_RAM_DEVICE_RESET = 13,
};

/* What the client finds itself (client::ClientError). */
enum guest_ram_client_error {
    GUEST_RAM_E_BAD_REPLY = -1,       /* the reply does not parse or disagrees */
    GUEST_RAM_E_ZERO_LENGTH = -2,     /* a range of length zero */
    GUEST_RAM_E_OVERFLOW = -3,        /* gpa + len overflows */
    GUEST_RAM_E_LENGTH_MISMATCH = -4, /* segments and data differ in length */
    GUEST_RAM_E_TOO_LARGE = -5,       /* needs more shared buffer than there is */
};

static inline const char *guest_ram_strerror(int code)
{
    switch (code) {
    case GUEST_RAM_OK: return "ok";
    case GUEST_RAM_MALFORMED: return "malformed message";
    case GUEST_RAM_BAD_VERSION: return "unsupported protocol version";
    case GUEST_RAM_UNKNOWN_OP: return "unknown operation";
    case GUEST_RAM_UNKNOWN_CLIENT: return "channel is not a client";
    case GUEST_RAM_ZERO_LENGTH: return "zero-length segment";
    case GUEST_RAM_OVERFLOW: return "address arithmetic overflows";
    case GUEST_RAM_OUTSIDE_WINDOW: return "guest range outside the client's windows";
    case GUEST_RAM_NO_PERMISSION: return "window does not permit this access";
    case GUEST_RAM_NOT_RAM: return "guest range is not RAM";
    case GUEST_RAM_OUTSIDE_BUFFER: return "buffer range outside the shared buffer";
    case GUEST_RAM_TOO_MANY_SEGMENTS: return "too many segments";
    case GUEST_RAM_INTERNAL: return "internal error in the VMM";
    case GUEST_RAM_DEVICE_RESET: return "the client's device was reset since it last looked";
    case GUEST_RAM_E_BAD_REPLY: return "malformed reply from the VMM";
    case GUEST_RAM_E_ZERO_LENGTH: return "zero-length range";
    case GUEST_RAM_E_OVERFLOW: return "range end overflows";
    case GUEST_RAM_E_LENGTH_MISMATCH: return "segments and data differ in length";
    case GUEST_RAM_E_TOO_LARGE: return "transfer does not fit the shared buffer";
    default: return "unknown error";
    }
}

/* A guest-physical range. */
typedef struct guest_ram_range {
    uint64_t gpa;
    uint64_t len;
} guest_ram_range_t;

/* One window of the client, as Info reports it. */
typedef struct guest_ram_window {
    uint64_t gpa;
    uint64_t len;
    uint32_t perms; /* GUEST_RAM_PERM_* */
} guest_ram_window_t;

typedef struct guest_ram_info {
    uint64_t buffer_len;
    uint32_t max_segments;
    uint32_t window_count;
    guest_ram_window_t windows[GUEST_RAM_MAX_WINDOWS];
} guest_ram_info_t;

/* A client: its channel to the VMM and its shared buffer, as mapped here. */
typedef struct guest_ram_client {
    microkit_channel channel;
    uint8_t *buffer;
    size_t buffer_len;
} guest_ram_client_t;

#define GUEST_RAM_CLIENT(ch, vaddr, len) \
    ((guest_ram_client_t){ .channel = (ch), .buffer = (uint8_t *)(uintptr_t)(vaddr), .buffer_len = (len) })

/* --- the wire ------------------------------------------------------------ */

static inline uint64_t guest_ram_header_word(uint32_t count)
{
    return (uint64_t)GUEST_RAM_VERSION | ((uint64_t)count << 32);
}

/* One call: words already in MR0.., the reply's status and byte count. */
static inline int guest_ram_exchange(guest_ram_client_t *c, uint64_t label, uint16_t words,
                                     uint64_t *bytes)
{
    microkit_msginfo reply = microkit_ppcall(c->channel, microkit_msginfo_new(label, words));
    uint64_t status_label = microkit_msginfo_get_label(reply);
    if (microkit_msginfo_get_count(reply) < 2) {
        return GUEST_RAM_E_BAD_REPLY;
    }
    uint64_t w0 = microkit_mr_get(0);
    uint64_t status = (w0 >> 16) & 0xffff;
    if ((w0 & 0xffff) != GUEST_RAM_VERSION || status != status_label || status > GUEST_RAM_DEVICE_RESET) {
        return GUEST_RAM_E_BAD_REPLY;
    }
    if (bytes) {
        *bytes = microkit_mr_get(1);
    }
    return (int)status;
}

/* Sends a raw request (for testing a VMM's refusals). */
static inline int guest_ram_call_raw(guest_ram_client_t *c, uint64_t label, const uint64_t *words,
                                     uint16_t count)
{
    for (uint16_t i = 0; i < count && i < GUEST_RAM_MSG_WORDS; i++) {
        microkit_mr_set((uint8_t)i, words[i]);
    }
    return guest_ram_exchange(c, label, count, NULL);
}

/* --- calls ---------------------------------------------------------------- */

static inline int guest_ram_ping(guest_ram_client_t *c)
{
    microkit_mr_set(0, guest_ram_header_word(0));
    return guest_ram_exchange(c, GUEST_RAM_OP_PING, 1, NULL);
}

static inline int guest_ram_info(guest_ram_client_t *c, guest_ram_info_t *info)
{
    microkit_mr_set(0, guest_ram_header_word(0));
    int err = guest_ram_exchange(c, GUEST_RAM_OP_INFO, 1, NULL);
    if (err) {
        return err;
    }
    info->buffer_len = microkit_mr_get(2);
    uint64_t w3 = microkit_mr_get(3);
    info->window_count = (uint32_t)w3;
    info->max_segments = (uint32_t)(w3 >> 32);
    if (info->window_count > GUEST_RAM_MAX_WINDOWS) {
        return GUEST_RAM_E_BAD_REPLY;
    }
    for (uint32_t i = 0; i < info->window_count; i++) {
        info->windows[i].gpa = microkit_mr_get((uint8_t)(4 + 3 * i));
        info->windows[i].len = microkit_mr_get((uint8_t)(5 + 3 * i));
        info->windows[i].perms = (uint32_t)microkit_mr_get((uint8_t)(6 + 3 * i));
    }
    return GUEST_RAM_OK;
}

static inline int guest_ram_fill(guest_ram_client_t *c, uint64_t gpa, uint64_t len, uint8_t byte)
{
    if (len == 0) {
        return GUEST_RAM_E_ZERO_LENGTH;
    }
    if (gpa + len < gpa) {
        return GUEST_RAM_E_OVERFLOW;
    }
    microkit_mr_set(0, guest_ram_header_word(0));
    microkit_mr_set(1, gpa);
    microkit_mr_set(2, len);
    microkit_mr_set(3, byte);
    uint64_t done = 0;
    int err = guest_ram_exchange(c, GUEST_RAM_OP_FILL, 4, &done);
    return err ? err : (done == len ? GUEST_RAM_OK : GUEST_RAM_E_BAD_REPLY);
}

/* One batch of segments, packed at buffer offsets from 0 (write: the data
 * is already in the buffer). */
static inline int guest_ram_batch(guest_ram_client_t *c, int write, const guest_ram_range_t *batch,
                                  uint32_t n, uint64_t bytes)
{
    uint64_t offset = 0;
    microkit_mr_set(0, guest_ram_header_word(n));
    for (uint32_t i = 0; i < n; i++) {
        microkit_mr_set((uint8_t)(1 + 3 * i), batch[i].gpa);
        microkit_mr_set((uint8_t)(2 + 3 * i), batch[i].len);
        microkit_mr_set((uint8_t)(3 + 3 * i), offset);
        offset += batch[i].len;
    }
    uint64_t op = write ? (n == 1 ? GUEST_RAM_OP_WRITE : GUEST_RAM_OP_WRITEV)
                        : (n == 1 ? GUEST_RAM_OP_READ : GUEST_RAM_OP_READV);
    uint64_t done = 0;
    int err = guest_ram_exchange(c, op, (uint16_t)(1 + 3 * n), &done);
    return err ? err : (done == bytes ? GUEST_RAM_OK : GUEST_RAM_E_BAD_REPLY);
}

/* The chunking engine (client::Client::transfer): as many segments as fit
 * the message and as many bytes as fit the buffer in each call. */
static inline int guest_ram_transfer(guest_ram_client_t *c, int write, const guest_ram_range_t *segs,
                                     size_t n, uint8_t *data, size_t data_len)
{
    uint64_t total = 0;
    if (n == 0) {
        return GUEST_RAM_E_ZERO_LENGTH;
    }
    for (size_t i = 0; i < n; i++) {
        if (segs[i].len == 0) {
            return GUEST_RAM_E_ZERO_LENGTH;
        }
        if (segs[i].gpa + segs[i].len < segs[i].gpa || total + segs[i].len < total) {
            return GUEST_RAM_E_OVERFLOW;
        }
        total += segs[i].len;
    }
    if (total != data_len) {
        return GUEST_RAM_E_LENGTH_MISMATCH;
    }
    if (c->buffer_len == 0) {
        return GUEST_RAM_E_TOO_LARGE;
    }
    guest_ram_range_t batch[GUEST_RAM_MAX_SEGMENTS];
    uint32_t count = 0;
    uint64_t batch_bytes = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t done = 0;
        while (done < segs[i].len) {
            uint64_t room = c->buffer_len - batch_bytes;
            uint64_t piece = segs[i].len - done < room ? segs[i].len - done : room;
            batch[count].gpa = segs[i].gpa + done;
            batch[count].len = piece;
            count++;
            batch_bytes += piece;
            done += piece;
            if (batch_bytes == c->buffer_len || count == GUEST_RAM_MAX_SEGMENTS
                || (i + 1 == n && done == segs[i].len)) {
                if (write) {
                    __builtin_memcpy(c->buffer, data + at, batch_bytes);
                }
                int err = guest_ram_batch(c, write, batch, count, batch_bytes);
                if (err) {
                    return err;
                }
                if (!write) {
                    __builtin_memcpy(data + at, c->buffer, batch_bytes);
                }
                at += batch_bytes;
                count = 0;
                batch_bytes = 0;
            }
        }
    }
    return GUEST_RAM_OK;
}

static inline int guest_ram_readv(guest_ram_client_t *c, const guest_ram_range_t *segs, size_t n,
                                  void *dst, size_t len)
{
    return guest_ram_transfer(c, 0, segs, n, (uint8_t *)dst, len);
}

static inline int guest_ram_writev(guest_ram_client_t *c, const guest_ram_range_t *segs, size_t n,
                                   const void *src, size_t len)
{
    return guest_ram_transfer(c, 1, segs, n, (uint8_t *)(uintptr_t)src, len);
}

static inline int guest_ram_read(guest_ram_client_t *c, uint64_t gpa, void *dst, size_t len)
{
    guest_ram_range_t seg = { .gpa = gpa, .len = len };
    return guest_ram_readv(c, &seg, 1, dst, len);
}

static inline int guest_ram_write(guest_ram_client_t *c, uint64_t gpa, const void *src, size_t len)
{
    guest_ram_range_t seg = { .gpa = gpa, .len = len };
    return guest_ram_writev(c, &seg, 1, src, len);
}

#endif /* GUEST_RAM_CLIENT_H */
