// SPDX-License-Identifier: BSD-2-Clause
//! The copy-service benchmark that `make bench-qemu`'s benchmark PD runs on
//! seL4, kept here so the host tests run it too (`tests/benchmark.rs`).
//!
//! In one run it measures, with a counter the caller supplies: a null
//! round trip ([`Client::ping`]); `read`, `read_in_place`, `write` and the
//! in-place write ([`Client::writev_in_place`]) of 4 KiB and 64 KiB
//! through the copy service; and a local copy of the same sizes between
//! two of the client's own mappings, the baseline of each ratio.

use core::fmt;

use crate::client::{Client, Transport};
use crate::{GpaRange, SharedBuffer};

/// One measured operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// Bytes per operation (0 for the null call).
    pub len: usize,
    /// Counter ticks per operation.
    pub ticks: u64,
    /// Counter ticks of a local copy of `len` bytes (0: no baseline).
    pub baseline: u64,
}

impl fmt::Display for Row {
    /// `name  len  ticks  (ratio x local copy)`; the ratio is
    /// baseline / ticks, so 1.00 is "as fast as a local copy".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<16} {:>6} B {:>10} cycles",
            self.name, self.len, self.ticks
        )?;
        if self.baseline > 0 && self.ticks > 0 {
            let hundredths = self.baseline * 100 / self.ticks;
            write!(
                f,
                "  {}.{:02}x local copy",
                hundredths / 100,
                hundredths % 100
            )?;
        }
        Ok(())
    }
}

/// Repetitions per size: enough for a stable mean under QEMU's `-icount`.
const REPS_4K: u64 = 64;
const REPS_64K: u64 = 16;
const REPS_PING: u64 = 256;

/// Runs the benchmark against guest RAM at `gpa` (a read-write window of
/// at least 64 KiB), with `scratch` a slice of at least 64 KiB and `a`,
/// `b` two local mappings of at least 64 KiB for the baseline. `now` reads
/// the counter; every row goes to `row`. Returns how many operations
/// failed (0 on a correct system).
pub fn run<T: Transport>(
    client: &mut Client<T>,
    gpa: u64,
    scratch: &mut [u8],
    a: &SharedBuffer,
    b: &SharedBuffer,
    mut now: impl FnMut() -> u64,
    mut row: impl FnMut(&Row),
) -> u32 {
    let mut failed = 0u32;
    let mut time = |reps: u64, f: &mut dyn FnMut() -> bool| {
        let start = now();
        let mut ok = true;
        for _ in 0..reps {
            ok &= f();
        }
        let ticks = now().wrapping_sub(start) / reps.max(1);
        (ticks, ok)
    };
    let (ticks, ok) = time(REPS_PING, &mut || client.ping().is_ok());
    failed += u32::from(!ok);
    row(&Row {
        name: "null PPC",
        len: 0,
        ticks,
        baseline: 0,
    });
    for (len, reps) in [(4usize << 10, REPS_4K), (64 << 10, REPS_64K)] {
        let Some(dst) = scratch.get_mut(..len) else {
            return failed + 1;
        };
        let (local, ok) = time(reps, &mut || b.copy_from(0, a, 0, len).is_ok());
        failed += u32::from(!ok);
        row(&Row {
            name: "local copy",
            len,
            ticks: local,
            baseline: local,
        });
        let segment = [GpaRange {
            gpa,
            len: len as u64,
        }];
        let names = ["read", "read_in_place", "write", "write_in_place"];
        for (which, name) in names.into_iter().enumerate() {
            let (ticks, ok) = time(reps, &mut || match which {
                0 => client.read(gpa, dst).is_ok(),
                1 => client.read_in_place(gpa, len).is_ok(),
                2 => client.write(gpa, dst).is_ok(),
                _ => client.writev_in_place(&segment).is_ok(),
            });
            failed += u32::from(!ok);
            row(&Row {
                name,
                len,
                ticks,
                baseline: local,
            });
        }
    }
    failed
}
