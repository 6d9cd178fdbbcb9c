// SPDX-License-Identifier: BSD-2-Clause
//! Console output of several VMs on one UART, a line at a time.
//!
//! Each VM's output bytes are held in a `LINE`-byte buffer of its own until
//! the guest's `\n` arrives; then the whole line goes to the UART prefixed
//! `vm<n>| `, so the lines of different VMs never interleave:
//!
//! ```text
//! vm0| linux: virtio-blk 11/11 passed\r\n
//! vm1| [    0.000000] Booting Linux on physical CPU 0x0\r\n
//! ```
//!
//! - Bytes are passed through as the guest sent them, `\r` included
//!   (Linux ends its lines with `\r\n`); nothing is lost or reordered
//!   within a VM.
//! - A line longer than `LINE` bytes is cut: each `LINE`-byte piece is
//!   written as a line of its own, prefix included, ended by the
//!   multiplexer with `\r\n` ([`Uart::end_line`]), and the rest follows on
//!   the next line. A `\r` just after a full piece is held back with it,
//!   so a line of exactly `LINE` bytes and its `\r\n` still come out as
//!   one line.
//! - [`Output::flush`] writes a held partial line, ended with `\r\n` (before
//!   power-off, or when a guest stops mid-line).
//!
//! A line is written as one [`Uart::write`] of the prefix, then one or two
//! writes of the guest's bytes (what was held, then the rest from the
//! input, up to and including its `\n`), then, for a line the multiplexer
//! ended, one [`Uart::end_line`]. Whole lines are written from the input
//! slice directly; only a partial line is copied, once, into the buffer.
//!
//! Complexity: [`Output::push`] is `O(bytes)` (each byte is looked at once
//! or twice), plus one write call per line; the others are `O(1)` (apart
//! from writing a held line). Memory: `VMS * (LINE + 40)` bytes or so.

use crate::{check_vm, Error};

/// Where the multiplexed output goes: the UART.
///
/// Any `FnMut(&[u8])` is one.
pub trait Uart {
    /// Writes `bytes` to the UART, in order.
    fn write(&mut self, bytes: &[u8]);

    /// Ends a line that the multiplexer cut or flushed (not one the guest
    /// ended): writes `\r\n`.
    fn end_line(&mut self) {
        self.write(b"\r\n");
    }
}

impl<F: FnMut(&[u8])> Uart for F {
    fn write(&mut self, bytes: &[u8]) {
        self(bytes);
    }
}

/// The `vm<n>| ` prefix, formatted without allocation.
struct Prefix {
    buf: [u8; 26],
    len: usize,
}

impl Prefix {
    fn new(vm: usize) -> Self {
        let mut digits = [0u8; 20];
        let mut n = vm;
        let mut count = 0;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
            count += 1;
            if n == 0 {
                break;
            }
        }
        let mut buf = [0u8; 26];
        let digits = digits.get(digits.len() - count..).unwrap_or(&[]);
        let parts = [&b"vm"[..], digits, &b"| "[..]];
        let mut len = 0;
        for (dst, src) in buf.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
            *dst = *src;
            len += 1;
        }
        Prefix { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

/// One VM's held partial line and counters.
#[derive(Clone, Copy)]
struct Held<const LINE: usize> {
    buf: [u8; LINE],
    len: usize,
    /// The buffer is full and a `\r` followed it: if the guest's `\n`
    /// comes next, the line ends as the guest ended it.
    cr: bool,
    bytes: u64,
    lines: u64,
}

impl<const LINE: usize> Held<LINE> {
    const EMPTY: Self = Held {
        buf: [0; LINE],
        len: 0,
        cr: false,
        bytes: 0,
        lines: 0,
    };

    fn body(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }

    /// Appends `bytes`, which the caller has made fit.
    fn append(&mut self, bytes: &[u8]) {
        let free = self.buf.get_mut(self.len..).unwrap_or(&mut []);
        for (dst, src) in free.iter_mut().zip(bytes) {
            *dst = *src;
            self.len += 1;
        }
    }

    /// Writes one line: the prefix, what is held, then `rest` of the
    /// input (a guest line's end, `\n` included, or a piece's end); the
    /// multiplexer ends it if `end` is set. The buffer is emptied.
    fn emit(&mut self, prefix: &Prefix, rest: &[u8], end: bool, uart: &mut impl Uart) {
        uart.write(prefix.as_bytes());
        if self.len > 0 {
            uart.write(self.body());
        }
        if !rest.is_empty() {
            uart.write(rest);
        }
        if end {
            uart.end_line();
        }
        self.len = 0;
        self.lines = self.lines.saturating_add(1);
    }
}

/// The console output of `VMS` VMs, each line held until whole, in a
/// `LINE`-byte buffer per VM (see the [module docs](self)). `LINE` must
/// be at least 1: choose it above the guests' console width (say 256), so
/// that only lines that would wrap anyway are cut.
#[derive(Clone)]
pub struct Output<const VMS: usize, const LINE: usize> {
    vms: [Held<LINE>; VMS],
}

impl<const VMS: usize, const LINE: usize> Default for Output<VMS, LINE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const VMS: usize, const LINE: usize> Output<VMS, LINE> {
    /// Nothing held, every counter 0.
    pub const fn new() -> Self {
        const { assert!(LINE > 0, "a line buffer must hold at least one byte") };
        Output {
            vms: [Held::EMPTY; VMS],
        }
    }

    /// VM `vm`'s console wrote `bytes`: every line they complete (with what
    /// was held) goes to `uart`, prefixed `vm<vm>| `; the rest is held.
    /// `O(bytes.len())`.
    pub fn push(&mut self, vm: usize, bytes: &[u8], uart: &mut impl Uart) -> Result<(), Error> {
        let held = self
            .vms
            .get_mut(check_vm(vm, VMS)?)
            .ok_or(Error::NoSuchVm { vm, vms: VMS })?;
        let prefix = Prefix::new(vm);
        held.bytes = held.bytes.saturating_add(bytes.len() as u64);
        let mut rest = bytes;
        while let Some((&first, after)) = rest.split_first() {
            if held.cr {
                // Full, and a `\r` after it.
                held.cr = false;
                if first == b'\n' {
                    held.emit(&prefix, b"\r\n", false, uart);
                    rest = after;
                } else {
                    held.emit(&prefix, &[], true, uart);
                    held.append(b"\r");
                }
                continue;
            }
            let room = LINE.saturating_sub(held.len);
            let window = rest.get(..room.saturating_add(1)).unwrap_or(rest);
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                // The line ends within the buffer's room.
                let (line, after) = rest.split_at_checked(i + 1).unwrap_or((rest, &[]));
                held.emit(&prefix, line, false, uart);
                rest = after;
            } else if rest.len() <= room {
                held.append(rest);
                rest = &[];
            } else {
                // More than fits and no `\n`: a piece of `LINE` bytes.
                let (piece, after) = rest.split_at_checked(room).unwrap_or((rest, &[]));
                if after.first() == Some(&b'\r') {
                    held.append(piece);
                    held.cr = true;
                    rest = after.get(1..).unwrap_or(&[]);
                } else {
                    held.emit(&prefix, piece, true, uart);
                    rest = after;
                }
            }
        }
        Ok(())
    }

    /// Writes VM `vm`'s held partial line, if any, ended with `\r\n`;
    /// returns whether there was one.
    pub fn flush(&mut self, vm: usize, uart: &mut impl Uart) -> Result<bool, Error> {
        let held = self
            .vms
            .get_mut(check_vm(vm, VMS)?)
            .ok_or(Error::NoSuchVm { vm, vms: VMS })?;
        if held.len == 0 && !held.cr {
            return Ok(false);
        }
        let cr: &[u8] = if held.cr { b"\r" } else { &[] };
        held.cr = false;
        held.emit(&Prefix::new(vm), cr, true, uart);
        Ok(true)
    }

    /// How many bytes of VM `vm`'s output are held, waiting for their line's
    /// end (at most `LINE + 1`: a full buffer and a `\r`).
    pub fn held(&self, vm: usize) -> Result<usize, Error> {
        let held = self.get(vm)?;
        Ok(held.len + usize::from(held.cr))
    }

    /// How many bytes VM `vm` has pushed in all (saturating).
    pub fn bytes(&self, vm: usize) -> Result<u64, Error> {
        Ok(self.get(vm)?.bytes)
    }

    /// How many lines of VM `vm` have been written, cut pieces and flushed
    /// lines included (saturating).
    pub fn lines(&self, vm: usize) -> Result<u64, Error> {
        Ok(self.get(vm)?.lines)
    }

    fn get(&self, vm: usize) -> Result<&Held<LINE>, Error> {
        self.vms.get(vm).ok_or(Error::NoSuchVm { vm, vms: VMS })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A UART that records the bytes, with the multiplexer's own line
    /// ends shown as `$\r\n`.
    #[derive(Default)]
    struct Rec(Vec<u8>);

    impl Uart for Rec {
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn end_line(&mut self) {
            self.0.extend_from_slice(b"$\r\n");
        }
    }

    fn text(r: &Rec) -> &str {
        std::str::from_utf8(&r.0).unwrap()
    }

    #[test]
    fn prefixes() {
        for (vm, p) in [(0, "vm0| "), (7, "vm7| "), (10, "vm10| "), (305, "vm305| ")] {
            assert_eq!(Prefix::new(vm).as_bytes(), p.as_bytes());
        }
        let max = std::format!("vm{}| ", usize::MAX);
        assert_eq!(Prefix::new(usize::MAX).as_bytes(), max.as_bytes());
    }

    #[test]
    fn whole_lines_and_partial_lines() {
        let mut out = Output::<3, 16>::new();
        let mut r = Rec::default();
        out.push(2, b"one\r\ntw", &mut r).unwrap();
        assert_eq!(text(&r), "vm2| one\r\n");
        out.push(0, b"zero", &mut r).unwrap();
        out.push(2, b"o\r", &mut r).unwrap();
        assert_eq!(out.held(2), Ok(4));
        out.push(2, b"\nthree\r\n\r\n", &mut r).unwrap();
        out.push(0, b"\r\n", &mut r).unwrap();
        assert_eq!(
            text(&r),
            "vm2| one\r\nvm2| two\r\nvm2| three\r\nvm2| \r\nvm0| zero\r\n"
        );
        assert_eq!(out.lines(2), Ok(4));
        assert_eq!(out.bytes(2), Ok(19));
        assert_eq!(out.bytes(1), Ok(0));
        assert_eq!(out.held(2), Ok(0));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut out = Output::<1, 4>::new();
        let mut r = Rec::default();
        out.push(0, b"abcdefghij\n", &mut r).unwrap();
        assert_eq!(text(&r), "vm0| abcd$\r\nvm0| efgh$\r\nvm0| ij\n");
        // Exactly LINE bytes, then the guest's \r\n: one line.
        let mut r = Rec::default();
        out.push(0, b"abcd\r\n", &mut r).unwrap();
        assert_eq!(text(&r), "vm0| abcd\r\n");
        // The same, a byte at a time.
        let mut r = Rec::default();
        for b in b"wxyz\r\nwxyz\rq\n" {
            out.push(0, &[*b], &mut r).unwrap();
        }
        assert_eq!(text(&r), "vm0| wxyz\r\nvm0| wxyz$\r\nvm0| \rq\n");
        // Exactly LINE bytes and then the next byte.
        let mut r = Rec::default();
        out.push(0, b"abcd", &mut r).unwrap();
        assert_eq!(out.held(0), Ok(4));
        out.push(0, b"e", &mut r).unwrap();
        out.push(0, b"\n", &mut r).unwrap();
        assert_eq!(text(&r), "vm0| abcd$\r\nvm0| e\n");
    }

    #[test]
    fn flush() {
        let mut out = Output::<2, 4>::new();
        let mut r = Rec::default();
        assert_eq!(out.flush(1, &mut r), Ok(false));
        out.push(1, b"ab", &mut r).unwrap();
        assert_eq!(out.flush(1, &mut r), Ok(true));
        out.push(1, b"abcd\r", &mut r).unwrap();
        assert_eq!(out.held(1), Ok(5));
        assert_eq!(out.flush(1, &mut r), Ok(true));
        assert_eq!(out.flush(1, &mut r), Ok(false));
        assert_eq!(text(&r), "vm1| ab$\r\nvm1| abcd\r$\r\n");
        assert_eq!(out.lines(1), Ok(2));
    }

    #[test]
    fn closures_are_uarts() {
        let mut out = Output::<1, 8>::new();
        let mut bytes = Vec::new();
        out.push(0, b"0123456789", &mut |b: &[u8]| bytes.extend_from_slice(b))
            .unwrap();
        assert_eq!(bytes, b"vm0| 01234567\r\n");
    }

    #[test]
    fn unknown_vms_change_nothing() {
        let mut out = Output::<2, 8>::new();
        let mut r = Rec::default();
        let err = Err(Error::NoSuchVm { vm: 2, vms: 2 });
        assert_eq!(out.push(2, b"x\n", &mut r), err);
        assert_eq!(out.flush(2, &mut r), err.map(|()| false));
        assert_eq!(out.held(2), err.map(|()| 0));
        assert_eq!(
            out.bytes(usize::MAX),
            Err(Error::NoSuchVm {
                vm: usize::MAX,
                vms: 2
            })
        );
        assert!(r.0.is_empty());
    }
}
