// SPDX-License-Identifier: BSD-2-Clause
//! One hardware timer for several VMMs.
//!
//! When a VMM's guest idles at `wfi`, the VMM needs a wake-up at the
//! guest's timer deadline, but each core has one hardware timer. A timer
//! PD owns it and multiplexes: each client (a VMM, by index) has at most
//! one absolute deadline, in the timer's counter ticks, and the hardware is
//! programmed for the earliest.
//!
//! - [`Deadlines`]: the clients' deadlines; every change answers with what
//!   the hardware timer must now be programmed to ([`Program`]).
//! - [`protocol`]: the PPC the VMMs make to the timer PD (`SET`,
//!   `CANCEL`), decoded and encoded as plain integers.
//!
//! ```
//! use timer_mux::{Deadlines, Program};
//! let mut timer = Deadlines::<3>::new();
//! assert_eq!(timer.set(0, 500), Ok(Program::At(500)));
//! assert_eq!(timer.set(2, 300), Ok(Program::At(300)));
//! let mut woken = Vec::new();
//! assert_eq!(timer.fired(300, |client| woken.push(client)), Program::At(500));
//! assert_eq!(woken, [2]);
//! assert_eq!(timer.cancel(0), Ok(Program::Off));
//! ```
//!
//! `#![no_std]`, no allocation, no `unsafe`; nothing a client sends can make
//! it panic: `make no-panic` checks that.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod protocol;

use core::fmt;

/// What the timer refuses. A refused call changes nothing.
///
/// Each has a nonzero reply code ([`Error::code`]) that the timer PD
/// returns as its reply label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A request label that is neither `SET` nor `CANCEL`.
    UnknownRequest,
    /// A request with the wrong number of message words for its label.
    BadLength,
    /// A client index not below the number of clients (a PD
    /// misconfiguration: the index comes from the caller's channel).
    NoSuchClient,
    /// A reply label that is no known code (client side).
    UnknownReply,
}

impl Error {
    /// The reply label that carries this error (never 0, which is ok).
    pub const fn code(self) -> u64 {
        match self {
            Error::UnknownRequest => 1,
            Error::BadLength => 2,
            Error::NoSuchClient => 3,
            Error::UnknownReply => 4,
        }
    }

    /// The error a nonzero reply code stands for ([`Error::UnknownReply`]
    /// for a code that is none of them).
    pub const fn from_code(code: u64) -> Error {
        match code {
            1 => Error::UnknownRequest,
            2 => Error::BadLength,
            3 => Error::NoSuchClient,
            _ => Error::UnknownReply,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::UnknownRequest => "unknown timer request",
            Error::BadLength => "timer request with the wrong number of message words",
            Error::NoSuchClient => "no such timer client",
            Error::UnknownReply => "unknown timer reply code",
        })
    }
}

/// What the hardware timer must be programmed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Fire at this absolute counter value (which may already have
    /// passed: then it must fire at once, as a compare timer such as
    /// Arm's `CNTP_CVAL` does).
    At(u64),
    /// No deadline: turn the timer off.
    Off,
}

/// The deadlines of `CLIENTS` clients, at most one each.
///
/// Complexity: every operation is `O(CLIENTS)` (a scan for the earliest
/// deadline); `CLIENTS` is the number of VMMs on the core, a handful.
#[derive(Clone, Debug)]
pub struct Deadlines<const CLIENTS: usize> {
    at: [Option<u64>; CLIENTS],
}

impl<const CLIENTS: usize> Default for Deadlines<CLIENTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CLIENTS: usize> Deadlines<CLIENTS> {
    /// No deadlines.
    pub const fn new() -> Self {
        Deadlines {
            at: [None; CLIENTS],
        }
    }

    /// Client `client`'s deadline becomes `at` (replacing one it had);
    /// returns what to program.
    pub fn set(&mut self, client: usize, at: u64) -> Result<Program, Error> {
        *self.at.get_mut(client).ok_or(Error::NoSuchClient)? = Some(at);
        Ok(self.program())
    }

    /// Client `client` has no deadline now (it had none: no change);
    /// returns what to program.
    pub fn cancel(&mut self, client: usize) -> Result<Program, Error> {
        *self.at.get_mut(client).ok_or(Error::NoSuchClient)? = None;
        Ok(self.program())
    }

    /// The timer fired (or the PD looked) at `now`: calls `notify` for every
    /// client whose deadline is at or before `now`, in client order, and
    /// clears those deadlines; returns what to program.
    pub fn fired(&mut self, now: u64, mut notify: impl FnMut(usize)) -> Program {
        for (client, at) in self.at.iter_mut().enumerate() {
            if at.is_some_and(|t| t <= now) {
                *at = None;
                notify(client);
            }
        }
        self.program()
    }

    /// Client `client`'s deadline.
    pub fn deadline(&self, client: usize) -> Result<Option<u64>, Error> {
        self.at.get(client).copied().ok_or(Error::NoSuchClient)
    }

    /// What the hardware timer must be programmed to: the earliest
    /// deadline, or off.
    pub fn program(&self) -> Program {
        self.at
            .iter()
            .flatten()
            .min()
            .map_or(Program::Off, |t| Program::At(*t))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn earliest_wins() {
        let mut d = Deadlines::<4>::new();
        assert_eq!(d.program(), Program::Off);
        assert_eq!(d.set(1, 1000), Ok(Program::At(1000)));
        assert_eq!(d.set(3, 2000), Ok(Program::At(1000)));
        assert_eq!(d.set(1, 3000), Ok(Program::At(2000)));
        assert_eq!(d.set(0, 0), Ok(Program::At(0)));
        assert_eq!(d.cancel(0), Ok(Program::At(2000)));
        assert_eq!(d.cancel(0), Ok(Program::At(2000)));
        assert_eq!(d.deadline(1), Ok(Some(3000)));
        assert_eq!(d.deadline(2), Ok(None));
    }

    #[test]
    fn firing_clears_what_is_due() {
        let mut d = Deadlines::<4>::new();
        for (c, t) in [(0, 10), (1, 20), (2, 20), (3, u64::MAX)] {
            d.set(c, t).unwrap();
        }
        let mut woken = Vec::new();
        assert_eq!(d.fired(9, |c| woken.push(c)), Program::At(10));
        assert!(woken.is_empty());
        assert_eq!(d.fired(20, |c| woken.push(c)), Program::At(u64::MAX));
        assert_eq!(woken, [0, 1, 2]);
        assert_eq!(d.fired(u64::MAX, |c| woken.push(c)), Program::Off);
        assert_eq!(woken, [0, 1, 2, 3]);
    }

    #[test]
    fn unknown_clients_are_errors() {
        let mut d = Deadlines::<2>::new();
        d.set(0, 5).unwrap();
        assert_eq!(d.set(2, 1), Err(Error::NoSuchClient));
        assert_eq!(d.cancel(usize::MAX), Err(Error::NoSuchClient));
        assert_eq!(d.deadline(2), Err(Error::NoSuchClient));
        assert_eq!(d.program(), Program::At(5));
        let mut none = Deadlines::<0>::new();
        assert_eq!(none.set(0, 1), Err(Error::NoSuchClient));
        assert_eq!(none.fired(u64::MAX, |_| unreachable!()), Program::Off);
    }

    #[test]
    fn error_codes_round_trip() {
        for e in [
            Error::UnknownRequest,
            Error::BadLength,
            Error::NoSuchClient,
            Error::UnknownReply,
        ] {
            assert_ne!(e.code(), 0);
            assert_eq!(Error::from_code(e.code()), e);
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(Error::from_code(99), Error::UnknownReply);
    }
}
