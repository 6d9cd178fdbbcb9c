// SPDX-License-Identifier: BSD-2-Clause
//! The hypercall ABI between a guest and this VMM.
//!
//! A guest `hvc #0` is handled by seL4 like a system call numbered by `x7`:
//! a negative `x7` is a real seL4 system call on the guest's own (empty)
//! capability space, and only a non-negative one reaches the VMM, as an
//! `UnknownSyscall` fault carrying `x0..x7`. So this ABI is selected by
//! `x7 = ` [`ABI`], `x0` is the function, `x1..x6` its arguments; the VMM
//! answers in `x0` ([`RET_OK`] or an error code) and resumes the guest after
//! the `hvc`.
//!
//! | `x0` | function | arguments |
//! |---|---|---|
//! | 1 | [`Hypercall::Print`] | `x1` gpa, `x2` length of a UTF-8 line (≤ [`MAX_PRINT`]) |
//! | 2 | [`Hypercall::Result`] | `x1` passed, `x2` total, `x3` gpa and `x4` length of the suite name |
//! | 3 | [`Hypercall::Exit`] | `x1` exit code: the VMM stops the vCPU |
//!
//! ```
//! use vcpu_fault::hvc::{decode, Hypercall, ABI};
//! let regs = [2, 7, 7, 0x4010_0000, 10, 0, 0, ABI];
//! assert_eq!(decode(&regs), Ok(Hypercall::Result { passed: 7, total: 7, name_gpa: 0x4010_0000, name_len: 10 }));
//! assert!(decode(&[2, 7, 7, 0, 0, 0, 0, 99]).is_err());
//! ```

use core::fmt;

/// The value of `x7` that selects this ABI.
pub const ABI: u64 = 0;
/// Function number of [`Hypercall::Print`].
pub const PRINT: u64 = 1;
/// Function number of [`Hypercall::Result`].
pub const RESULT: u64 = 2;
/// Function number of [`Hypercall::Exit`].
pub const EXIT: u64 = 3;

/// Longest line (or suite name) the VMM prints for a guest.
pub const MAX_PRINT: u64 = 256;

/// Returned in `x0`: done.
pub const RET_OK: u64 = 0;
/// Returned in `x0`: unknown ABI or function.
pub const RET_UNKNOWN: u64 = u64::MAX;
/// Returned in `x0`: bad arguments (too long, not in guest RAM).
pub const RET_INVALID: u64 = u64::MAX - 1;

/// One decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Print a line of the guest's: `len` bytes at `gpa`.
    Print {
        /// Where the text is.
        gpa: u64,
        /// Its length, at most [`MAX_PRINT`].
        len: u64,
    },
    /// Report a test result, which the VMM logs as
    /// `guest: <name> <passed>/<total> passed`.
    Result {
        /// Checks passed.
        passed: u64,
        /// Checks run.
        total: u64,
        /// The suite name's gpa.
        name_gpa: u64,
        /// Its length, at most [`MAX_PRINT`].
        name_len: u64,
    },
    /// Stop this vCPU with a code.
    Exit {
        /// The guest's exit code.
        code: u64,
    },
}

/// Why a hypercall is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvcError {
    /// `x7` is not [`ABI`].
    UnknownAbi(u64),
    /// `x0` is not a function of this ABI.
    UnknownFunction(u64),
    /// A length above [`MAX_PRINT`].
    TooLong(u64),
}

impl HvcError {
    /// The `x0` value the guest gets back.
    pub fn code(&self) -> u64 {
        match self {
            HvcError::UnknownAbi(_) | HvcError::UnknownFunction(_) => RET_UNKNOWN,
            HvcError::TooLong(_) => RET_INVALID,
        }
    }
}

impl fmt::Display for HvcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HvcError::UnknownAbi(x7) => write!(f, "unknown hypercall ABI x7 = {x7:#x}"),
            HvcError::UnknownFunction(x0) => write!(f, "unknown hypercall function x0 = {x0:#x}"),
            HvcError::TooLong(len) => write!(f, "hypercall text of {len} bytes is too long"),
        }
    }
}

/// Decodes `x0..x7` of an `hvc`.
pub fn decode(x: &[u64; 8]) -> Result<Hypercall, HvcError> {
    if x[7] != ABI {
        return Err(HvcError::UnknownAbi(x[7]));
    }
    let short = |len: u64| {
        if len <= MAX_PRINT {
            Ok(len)
        } else {
            Err(HvcError::TooLong(len))
        }
    };
    match x[0] {
        PRINT => Ok(Hypercall::Print {
            gpa: x[1],
            len: short(x[2])?,
        }),
        RESULT => Ok(Hypercall::Result {
            passed: x[1],
            total: x[2],
            name_gpa: x[3],
            name_len: short(x[4])?,
        }),
        EXIT => Ok(Hypercall::Exit { code: x[1] }),
        other => Err(HvcError::UnknownFunction(other)),
    }
}

/// Guest bytes shown as text: printable ASCII as is, anything else as `?`
/// (see [`sanitize`]).
///
/// ```
/// use vcpu_fault::hvc::Text;
/// assert_eq!(format!("{}", Text(b"ok\x1b[2J")), "ok?[2J");
/// ```
pub struct Text<'a>(pub &'a [u8]);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|b| fmt::Write::write_char(f, sanitize(*b)))
    }
}

/// The character a VMM prints for a guest byte: printable ASCII as is,
/// anything else as `?`, so that a guest cannot send escape sequences to
/// the console.
pub fn sanitize(byte: u8) -> char {
    if byte.is_ascii_graphic() || byte == b' ' {
        char::from(byte)
    } else {
        '?'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions() {
        assert_eq!(
            decode(&[PRINT, 0x1000, 12, 0, 0, 0, 0, ABI]),
            Ok(Hypercall::Print {
                gpa: 0x1000,
                len: 12
            })
        );
        assert_eq!(
            decode(&[EXIT, 3, 0, 0, 0, 0, 0, ABI]),
            Ok(Hypercall::Exit { code: 3 })
        );
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0, 0, ABI]),
            Err(HvcError::UnknownFunction(9))
        );
        assert_eq!(
            decode(&[PRINT, 0, MAX_PRINT + 1, 0, 0, 0, 0, ABI]),
            Err(HvcError::TooLong(MAX_PRINT + 1))
        );
        assert_eq!(
            decode(&[PRINT, 0, 1, 0, 0, 0, 0, 1]).unwrap_err().code(),
            RET_UNKNOWN
        );
    }

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize(b'a'), 'a');
        assert_eq!(sanitize(0x1b), '?');
        assert_eq!(sanitize(0xff), '?');
    }
}
