// SPDX-License-Identifier: BSD-2-Clause
//! `memcpy` and `memmove` for AArch64 Microkit protection domains.
//!
//! compiler-builtins' `memcpy` (what `-Z build-std-features=
//! compiler-builtins-mem` gives a bare-metal PD) copies 8-byte words in a
//! plain loop: about 2 bytes per instruction, and on a strict-alignment
//! target (`aarch64-unknown-none`) byte by byte when source and
//! destination are not both word-aligned. Here, when source and
//! destination are equally aligned, the bulk moves 64 bytes a turn through
//! four `ldp`/`stp` pairs of 64-bit registers: 11 instructions per 64
//! bytes, no FP/SIMD register (NEON would make every copying PD an FPU
//! user whose state seL4 then saves and restores). Heads and tails go by
//! words and bytes.
//!
//! With feature `export` on AArch64 bare metal, [`copy_forward`] and
//! [`copy`] become the `memcpy` and `memmove` symbols, in place of
//! compiler-builtins' weak ones. Elsewhere the same logic runs with a
//! portable block loop, which the host tests and Miri check against a
//! reference; [`check`] does it on the target.
//!
//! ```
//! let mut buf: [u8; 200] = core::array::from_fn(|i| i as u8);
//! // Overlapping, forwards in memory: memmove semantics.
//! // SAFETY: both ranges lie inside `buf`.
//! unsafe { pd_memcpy::copy(buf.as_mut_ptr().add(8), buf.as_ptr(), 150) };
//! assert_eq!(buf[8..158], core::array::from_fn::<u8, 150, _>(|i| i as u8));
//! ```
#![no_std]
// Without it LLVM may recognise the byte and word loops below as a copy
// and call `memcpy`: with `export`, that is this crate, forever.
#![no_builtins]
#![allow(
    unsafe_code,
    reason = "a memcpy: raw pointers throughout, and the exported symbols must be unmangled"
)]

/// Block size of the wide loop.
const BLOCK: usize = 64;
const WORD: usize = 8;

/// Copies `n` bytes from `src` to `dst`, lowest address first: right for
/// disjoint ranges and for overlapping ones with `dst <= src`.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `n` bytes.
pub unsafe fn copy_forward(mut dst: *mut u8, mut src: *const u8, mut n: usize) {
    if n >= 2 * WORD && (dst as usize ^ src as usize) % WORD == 0 {
        // SAFETY: every access below is inside the `n` bytes the caller
        // vouches for; the pointers advance as `n` shrinks.
        unsafe {
            while (dst as usize) % WORD != 0 {
                byte(dst, src);
                (dst, src, n) = (dst.add(1), src.add(1), n - 1);
            }
            let blocks = n / BLOCK;
            blocks_forward(dst, src, blocks);
            let done = blocks * BLOCK;
            (dst, src, n) = (dst.add(done), src.add(done), n - done);
            while n >= WORD {
                word(dst, src);
                (dst, src, n) = (dst.add(WORD), src.add(WORD), n - WORD);
            }
        }
    }
    // SAFETY: as above.
    unsafe {
        while n > 0 {
            byte(dst, src);
            (dst, src, n) = (dst.add(1), src.add(1), n - 1);
        }
    }
}

/// Copies `n` bytes from `src` to `dst`, highest address first: right for
/// overlapping ranges with `dst > src`.
///
/// # Safety
/// As [`copy_forward`].
pub unsafe fn copy_backward(dst: *mut u8, src: *const u8, mut n: usize) {
    // SAFETY: every access is inside the `n` bytes the caller vouches
    // for: the ends start one past them and move down as `n` shrinks.
    unsafe {
        let (mut dst_end, mut src_end) = (dst.add(n), src.add(n));
        if n >= 2 * WORD && (dst as usize ^ src as usize) % WORD == 0 {
            while (dst_end as usize) % WORD != 0 {
                (dst_end, src_end, n) = (dst_end.sub(1), src_end.sub(1), n - 1);
                byte(dst_end, src_end);
            }
            let blocks = n / BLOCK;
            let done = blocks * BLOCK;
            blocks_backward(dst_end, src_end, blocks);
            (dst_end, src_end, n) = (dst_end.sub(done), src_end.sub(done), n - done);
            while n >= WORD {
                (dst_end, src_end, n) = (dst_end.sub(WORD), src_end.sub(WORD), n - WORD);
                word(dst_end, src_end);
            }
        }
        while n > 0 {
            (dst_end, src_end, n) = (dst_end.sub(1), src_end.sub(1), n - 1);
            byte(dst_end, src_end);
        }
    }
}

/// One byte. Volatile, as [`word`] is: the loops around them must stay
/// loops of general-purpose loads and stores. Otherwise LLVM vectorises
/// them with NEON, whose registers a PD's `memcpy` must not touch.
///
/// # Safety
/// `src` readable, `dst` writable.
#[inline(always)]
unsafe fn byte(dst: *mut u8, src: *const u8) {
    // SAFETY: the caller's.
    unsafe { dst.write_volatile(src.read_volatile()) }
}

/// One 8-byte word; see [`byte`].
///
/// # Safety
/// `src` readable, `dst` writable, both 8-byte aligned.
#[inline(always)]
unsafe fn word(dst: *mut u8, src: *const u8) {
    // SAFETY: the caller's.
    unsafe { (dst as *mut u64).write_volatile((src as *const u64).read_volatile()) }
}

/// `memmove`: copies `n` bytes from `src` to `dst`, which may overlap.
///
/// # Safety
/// As [`copy_forward`].
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // Forwards unless `dst` starts inside the source, past its start.
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: the caller's.
        unsafe { copy_forward(dst, src, n) }
    } else {
        // SAFETY: the caller's.
        unsafe { copy_backward(dst, src, n) }
    }
}

/// `blocks` blocks of 64 bytes from `src` up to `dst`, both 8-byte
/// aligned; each block is read whole before it is written.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn blocks_forward(dst: *mut u8, src: *const u8, blocks: usize) {
    if blocks == 0 {
        return;
    }
    // SAFETY: the caller's: `blocks * 64` bytes, 8-byte aligned (which
    // `ldp`/`stp` of x registers need on a strict-alignment target).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{src}]",
            "ldp {c}, {d}, [{src}, #16]",
            "ldp {e}, {f}, [{src}, #32]",
            "ldp {g}, {h}, [{src}, #48]",
            "add {src}, {src}, #64",
            "stp {a}, {b}, [{dst}]",
            "stp {c}, {d}, [{dst}, #16]",
            "stp {e}, {f}, [{dst}, #32]",
            "stp {g}, {h}, [{dst}, #48]",
            "add {dst}, {dst}, #64",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) blocks => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            e = out(reg) _, f = out(reg) _, g = out(reg) _, h = out(reg) _,
            options(nostack),
        );
    }
}

/// `blocks` blocks of 64 bytes ending at `src_end` down to `dst_end`, both
/// 8-byte aligned, highest block first; each read whole before written.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn blocks_backward(dst_end: *mut u8, src_end: *const u8, blocks: usize) {
    if blocks == 0 {
        return;
    }
    // SAFETY: as in `blocks_forward`.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{src}, #-16]",
            "ldp {c}, {d}, [{src}, #-32]",
            "ldp {e}, {f}, [{src}, #-48]",
            "ldp {g}, {h}, [{src}, #-64]!",
            "stp {a}, {b}, [{dst}, #-16]",
            "stp {c}, {d}, [{dst}, #-32]",
            "stp {e}, {f}, [{dst}, #-48]",
            "stp {g}, {h}, [{dst}, #-64]!",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src_end => _,
            dst = inout(reg) dst_end => _,
            n = inout(reg) blocks => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            e = out(reg) _, f = out(reg) _, g = out(reg) _, h = out(reg) _,
            options(nostack),
        );
    }
}

/// The portable block loop: the same reads and writes, in Rust (each
/// block read whole, then written).
#[cfg(not(target_arch = "aarch64"))]
unsafe fn blocks_forward(mut dst: *mut u8, mut src: *const u8, blocks: usize) {
    for _ in 0..blocks {
        // SAFETY: the caller's, as above.
        unsafe {
            let block = (src as *const [u64; BLOCK / WORD]).read_volatile();
            (dst as *mut [u64; BLOCK / WORD]).write_volatile(block);
            (dst, src) = (dst.add(BLOCK), src.add(BLOCK));
        }
    }
}

#[cfg(not(target_arch = "aarch64"))]
unsafe fn blocks_backward(mut dst_end: *mut u8, mut src_end: *const u8, blocks: usize) {
    for _ in 0..blocks {
        // SAFETY: the caller's, as above.
        unsafe {
            (dst_end, src_end) = (dst_end.sub(BLOCK), src_end.sub(BLOCK));
            let block = (src_end as *const [u64; BLOCK / WORD]).read_volatile();
            (dst_end as *mut [u64; BLOCK / WORD]).write_volatile(block);
        }
    }
}

/// Checks [`copy`] and [`copy_forward`] against a byte-by-byte reference,
/// in a 320-byte arena: every source and destination alignment (0..16),
/// lengths 0..=200, disjoint and overlapping both ways. `Err` gives the
/// first failing `(dst offset, src offset, len)`. For the PD's self-test:
/// on AArch64 these are the routines `memcpy` and `memmove` run.
#[allow(
    clippy::manual_memcpy,
    clippy::needless_range_loop,
    reason = "the reference copies byte by byte: a slice copy would call the memcpy under test"
)]
pub fn check() -> Result<usize, (usize, usize, usize)> {
    const ARENA: usize = 320;
    let fill = |a: &mut [u8; ARENA]| {
        for (i, b) in a.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(1);
        }
    };
    let (mut got, mut want) = ([0u8; ARENA], [0u8; ARENA]);
    let mut cases = 0;
    // Under Miri (slow), a sample: every alignment still occurs.
    let (src_step, dst_step, len_step) = if cfg!(miri) { (5, 29, 23) } else { (1, 1, 1) };
    for src in (0..16).step_by(src_step) {
        for dst in (0..ARENA - 200).step_by(dst_step) {
            for len in (0..=200).step_by(len_step) {
                for forward_only in [false, true] {
                    // `copy_forward` is only defined where `dst <= src` or
                    // the ranges are disjoint.
                    if forward_only && dst > src && dst < src + len {
                        continue;
                    }
                    fill(&mut got);
                    fill(&mut want);
                    // The reference: through a copy of the source.
                    let mut tmp = [0u8; 200];
                    for i in 0..len {
                        tmp[i] = want[src + i];
                    }
                    for i in 0..len {
                        want[dst + i] = tmp[i];
                    }
                    let base = got.as_mut_ptr();
                    // SAFETY: `src + len` and `dst + len` are inside the arena.
                    unsafe {
                        let (d, s) = (base.add(dst), base.add(src) as *const u8);
                        if forward_only {
                            copy_forward(d, s, len);
                        } else {
                            copy(d, s, len);
                        }
                    }
                    if got != want {
                        return Err((dst, src, len));
                    }
                    cases += 1;
                }
            }
        }
    }
    Ok(cases)
}

#[cfg(all(feature = "export", target_arch = "aarch64", target_os = "none"))]
mod export {
    /// `memcpy`, replacing compiler-builtins' weak one.
    ///
    /// # Safety
    /// C's: `src` readable and `dst` writable for `n` bytes, not
    /// overlapping.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller's.
        unsafe { super::copy_forward(dst, src, n) };
        dst
    }

    /// `memmove`, replacing compiler-builtins' weak one.
    ///
    /// # Safety
    /// C's: `src` readable and `dst` writable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller's.
        unsafe { super::copy(dst, src, n) };
        dst
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_a_byte_copy_everywhere() {
        let cases = super::check().unwrap();
        assert!(cases >= if cfg!(miri) { 250 } else { 500_000 }, "{cases}");
    }

    #[test]
    fn large_copies_both_ways() {
        let mut buf = [0u8; 4096];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let orig = buf;
        // SAFETY: inside `buf`.
        unsafe { super::copy(buf.as_mut_ptr().add(24), buf.as_ptr(), 4000) };
        assert_eq!(buf[24..4024], orig[..4000]);
        let orig = buf;
        // SAFETY: inside `buf`.
        unsafe { super::copy(buf.as_mut_ptr(), buf.as_ptr().add(40), 4000) };
        assert_eq!(buf[..4000], orig[40..4040]);
    }
}
