// SPDX-License-Identifier: BSD-2-Clause
//! Compiles the C self-test and include/guest_ram_client.h with the system
//! C compiler, warnings as errors, against host/microkit.h.
fn main() {
    for f in [
        "selftest.c",
        "selftest.h",
        "host/microkit.h",
        "../include/guest_ram_client.h",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new()
        .file("selftest.c")
        .include("host")
        .include("../include")
        .include(".")
        .flag("-std=c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("c_client_selftest");
}
