// SPDX-License-Identifier: BSD-2-Clause
//! Links the bare-metal program at the guest RAM address (`GUEST_RAM_GPA`,
//! from the board file through the Makefile).
fn main() {
    println!("cargo:rerun-if-env-changed=GUEST_RAM_GPA");
    println!("cargo:rerun-if-changed=link.x");
    if std::env::var_os("CARGO_FEATURE_BARE_METAL").is_some() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let gpa = std::env::var("GUEST_RAM_GPA").unwrap_or_else(|_| "0x40000000".into());
        println!("cargo:rustc-link-arg-bins=--defsym=GUEST_RAM_GPA={gpa}");
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.x");
    }
}
