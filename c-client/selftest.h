/* SPDX-License-Identifier: BSD-2-Clause */
/* The C client's self-test: run by the c-client PD on seL4 and by the
 * host test (tests/host.rs) against the Rust server. Include <microkit.h>
 * (or host/microkit.h) and guest_ram_client.h first. */
#ifndef C_CLIENT_SELFTEST_H
#define C_CLIENT_SELFTEST_H

#include <stdint.h>

/* Where the test works: the client's windows as the VMM sets them up
 * (guest_ram::selftest::Layout::selftest_windows, the same as the Rust
 * self-test's). */
struct c_selftest_layout {
    uint64_t rw;      /* a gpa in a read-write window (1 MiB of room) */
    uint64_t ro;      /* a gpa in a read-only window */
    uint64_t outside; /* a gpa in no window */
    uint64_t not_ram; /* a gpa in a writable window that is not RAM */
};

typedef void (*c_selftest_report)(const char *name, int ok);

/* Runs the checks; returns how many passed and sets *total. */
int c_client_selftest(guest_ram_client_t *c, struct c_selftest_layout layout, c_selftest_report report,
                      int *total);

#endif
