// SPDX-License-Identifier: BSD-2-Clause
//! Property test: `queue::walk` against a model that finds loops with a
//! visited set instead of a step bound. In a table of `size` entries a
//! chain longer than `size` must revisit an entry, so the two must agree on
//! every table, head and flag combination.

use std::collections::HashSet;

use guest_ram::GpaRange;
use proptest::prelude::*;
use virtio::queue::{flags, walk, ChainError, Desc};

#[derive(Debug, PartialEq)]
struct Model {
    readable: Vec<GpaRange>,
    writable: Vec<GpaRange>,
}

fn model(table: &[Desc], size: u16, head: u16) -> Result<Model, ChainError> {
    let size = usize::from(size).min(table.len());
    if usize::from(head) >= size {
        return Err(ChainError::HeadOutOfRange);
    }
    let (mut readable, mut writable) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    let mut i = usize::from(head);
    loop {
        let d = table[i];
        let f = d.flags.get();
        if f & flags::INDIRECT != 0 {
            return Err(ChainError::Indirect);
        }
        let w = f & flags::WRITE != 0;
        if !w && !writable.is_empty() {
            return Err(ChainError::ReadableAfterWritable);
        }
        // A descriptor's own faults are reported before the revisit.
        if !seen.insert(i) {
            return Err(ChainError::TooLong);
        }
        if d.len.get() != 0 {
            let r = GpaRange {
                gpa: d.addr.get(),
                len: u64::from(d.len.get()),
            };
            if w {
                writable.push(r)
            } else {
                readable.push(r)
            }
        }
        if f & flags::NEXT == 0 {
            return Ok(Model { readable, writable });
        }
        i = usize::from(d.next.get());
        if i >= size {
            return Err(ChainError::NextOutOfRange);
        }
    }
}

fn desc() -> impl Strategy<Value = Desc> {
    // Small lengths (some zero), flags mostly NEXT/WRITE, sometimes
    // INDIRECT, next indices a little beyond the table.
    (any::<u64>(), 0u32..4, 0u16..8, 0u16..20).prop_map(|(addr, len, f, next)| {
        let flags = (f & 3) | if f == 7 { flags::INDIRECT } else { 0 };
        Desc::new(addr, len * 100, flags, next)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 20 } else { 4000 }))]
    #[test]
    fn walk_agrees_with_the_model(
        table in proptest::collection::vec(desc(), 1..20),
        size in 1u16..20,
        head in 0u16..22,
    ) {
        let got = walk(&table, size, head).map(|c| Model {
            readable: c.readable().to_vec(),
            writable: c.writable().to_vec(),
        });
        prop_assert_eq!(got, model(&table, size, head));
    }
}
