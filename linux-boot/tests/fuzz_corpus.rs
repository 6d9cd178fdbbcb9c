// SPDX-License-Identifier: BSD-2-Clause
//! Replays the `boot` fuzz corpus, and mutations of a valid header + blob,
//! through the fuzz harness.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn boot_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/boot");
    let take = if cfg!(miri) { 4 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        let _ = harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    // A valid input: a header (image_size 1 MiB) and a blob with /memory
    // and /chosen; then single-byte mutations of it.
    let mut valid = vec![0u8; 64];
    valid[0] = 7;
    valid[0x10..0x18].copy_from_slice(&(1u64 << 20).to_le_bytes());
    valid[0x38..0x3c].copy_from_slice(&linux_boot::image::MAGIC.to_le_bytes());
    let blob = linux_boot::fdt::tests_support::chosen_blob();
    let total = linux_boot::fdt::Fdt::new(&blob).unwrap().total_size();
    valid.extend_from_slice(&blob[..total]);
    assert!(harness::run(&valid), "the valid input loads");
    let mut loaded = 0;
    let mut state = 0xd1b5_4a32_d192_ed03u64;
    for _ in 0..if cfg!(miri) { 2 } else { 300 } {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut input = valid.clone();
        let at = (state % input.len() as u64) as usize;
        input[at] ^= (state >> 32) as u8 | 1;
        loaded += usize::from(harness::run(&input));
    }
    // Most single-byte changes still load (they hit values, not layout).
    assert!(
        cfg!(miri) || loaded > 100,
        "{loaded} of 300 mutations loaded"
    );
}
