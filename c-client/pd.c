/* SPDX-License-Identifier: BSD-2-Clause */
/* The C client PD: a driver-PD-shaped client of the copy service written
 * in C against include/guest_ram_client.h and libmicrokit. It runs the C
 * self-test and prints `guest-ram: c-client N/N passed`. */
#include <stddef.h>
#include <stdint.h>
#include <microkit.h>
#include "guest_ram_client.h"
#include "selftest.h"

/* Set by the microkit tool from system.xml (setvar_vaddr, setvar_size,
 * setvar_id); in .data so that they have bytes in the ELF to patch. */
__attribute__((section(".data"))) uintptr_t buffer_vaddr = 0;
__attribute__((section(".data"))) uint64_t buffer_size = 0;
__attribute__((section(".data"))) uint64_t vmm_channel = 0;

/* A freestanding PD has no C library: what the compiler may call. */
void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

static void put_uint(unsigned value)
{
    char digits[12];
    int i = 0;
    do {
        digits[i++] = (char)('0' + value % 10);
        value /= 10;
    } while (value && i < 11);
    char out[12];
    int j = 0;
    while (i) {
        out[j++] = digits[--i];
    }
    out[j] = 0;
    microkit_dbg_puts(out);
}

static void report(const char *name, int ok)
{
    microkit_dbg_puts(ok ? "guest-ram: c-client check ok: " : "guest-ram: c-client check FAILED: ");
    microkit_dbg_puts(name);
    microkit_dbg_puts("\n");
}

void init(void)
{
    guest_ram_client_t vmm = GUEST_RAM_CLIENT((microkit_channel)vmm_channel, buffer_vaddr, buffer_size);
    /* The windows the VMM gives this client are the self-test's layout
     * (guest_ram::selftest::Layout); this client works 7 MiB into the
     * read-write window, away from the Rust self-test's data. */
    struct c_selftest_layout layout = {
        .rw = GUEST_RAM_GPA + (4u << 20) + (7u << 20),
        .ro = GUEST_RAM_GPA,
        .outside = GUEST_RAM_GPA + (13u << 20),
        .not_ram = GUEST_RAM_GPA + GUEST_RAM_SIZE - (1u << 18),
    };
    int total = 0;
    int passed = c_client_selftest(&vmm, layout, report, &total);
    microkit_dbg_puts("guest-ram: c-client ");
    put_uint((unsigned)passed);
    microkit_dbg_puts("/");
    put_uint((unsigned)total);
    microkit_dbg_puts(" passed\n");
}

void notified(microkit_channel ch)
{
    (void)ch;
}
