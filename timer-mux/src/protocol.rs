// SPDX-License-Identifier: BSD-2-Clause
//! The PPC a VMM makes to the timer PD.
//!
//! The request's `MessageInfo` label is the operation; the message
//! registers carry its arguments; the reply's label is [`OK`] (0) or an
//! [`Error::code`], with no message words. The client is the caller
//! (the timer PD knows it from the channel), never a message word.
//!
//! | label | request words | meaning |
//! |---|---|---|
//! | [`SET`] | MR0 = deadline (absolute counter ticks) | wake me at the deadline (replaces my previous one) |
//! | [`CANCEL`] | none | I need no wake-up |
//!
//! Anything else is refused: another label is [`Error::UnknownRequest`], a
//! known label with another number of words [`Error::BadLength`].
//!
//! ```
//! use timer_mux::protocol::{self, Request};
//! use timer_mux::{Deadlines, Program};
//! // The VMM:
//! let mut msg = [0u64; protocol::MAX_WORDS];
//! let (label, words) = Request::Set { at: 12_345 }.encode(&mut msg);
//! // The timer PD, for the client on that channel:
//! let mut timer = Deadlines::<2>::new();
//! let result = timer.handle(1, label, &msg[..words]);
//! assert_eq!(result, Ok(Program::At(12_345)));
//! let reply = protocol::reply_label(&result);
//! // The VMM again:
//! assert_eq!(protocol::decode_reply(reply), Ok(()));
//! ```

use crate::{Deadlines, Error, Program};

/// Request label: set my deadline to MR0.
pub const SET: u64 = 1;
/// Request label: cancel my deadline.
pub const CANCEL: u64 = 2;
/// Reply label: done.
pub const OK: u64 = 0;
/// Most message words a request has.
pub const MAX_WORDS: usize = 1;

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Wake the caller at `at` (absolute counter ticks).
    Set {
        /// The deadline.
        at: u64,
    },
    /// The caller needs no wake-up.
    Cancel,
}

/// Decodes a request from its label and message words. `O(1)`.
pub fn decode(label: u64, words: &[u64]) -> Result<Request, Error> {
    match (label, words) {
        (SET, &[at]) => Ok(Request::Set { at }),
        (CANCEL, &[]) => Ok(Request::Cancel),
        (SET | CANCEL, _) => Err(Error::BadLength),
        _ => Err(Error::UnknownRequest),
    }
}

impl Request {
    /// Encodes the request: returns its label and how many of `msg`'s
    /// words it uses.
    pub fn encode(self, msg: &mut [u64; MAX_WORDS]) -> (u64, usize) {
        match self {
            Request::Set { at } => {
                msg[0] = at;
                (SET, 1)
            }
            Request::Cancel => (CANCEL, 0),
        }
    }
}

/// The reply label for a request's result: [`OK`] or the error's code.
pub fn reply_label<T>(result: &Result<T, Error>) -> u64 {
    match result {
        Ok(_) => OK,
        Err(e) => e.code(),
    }
}

/// What a reply label says (client side).
pub fn decode_reply(label: u64) -> Result<(), Error> {
    match label {
        OK => Ok(()),
        code => Err(Error::from_code(code)),
    }
}

impl<const CLIENTS: usize> Deadlines<CLIENTS> {
    /// Decodes client `client`'s request and carries it out; returns what
    /// to program (or why not, and nothing changed). `O(CLIENTS)`.
    pub fn handle(&mut self, client: usize, label: u64, words: &[u64]) -> Result<Program, Error> {
        match decode(label, words)? {
            Request::Set { at } => self.set(client, at),
            Request::Cancel => self.cancel(client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exactly() {
        assert_eq!(decode(SET, &[7]), Ok(Request::Set { at: 7 }));
        assert_eq!(decode(CANCEL, &[]), Ok(Request::Cancel));
        assert_eq!(decode(SET, &[]), Err(Error::BadLength));
        assert_eq!(decode(SET, &[1, 2]), Err(Error::BadLength));
        assert_eq!(decode(CANCEL, &[0]), Err(Error::BadLength));
        assert_eq!(decode(0, &[]), Err(Error::UnknownRequest));
        assert_eq!(decode(u64::MAX, &[1]), Err(Error::UnknownRequest));
    }

    #[test]
    fn round_trips() {
        for req in [
            Request::Set { at: u64::MAX },
            Request::Set { at: 0 },
            Request::Cancel,
        ] {
            let mut msg = [0; MAX_WORDS];
            let (label, words) = req.encode(&mut msg);
            assert_eq!(decode(label, &msg[..words]), Ok(req));
        }
        assert_eq!(decode_reply(reply_label(&Ok::<(), Error>(()))), Ok(()));
        assert_eq!(
            decode_reply(reply_label(&Err::<(), _>(Error::BadLength))),
            Err(Error::BadLength)
        );
    }

    #[test]
    fn handle_changes_nothing_on_error() {
        let mut d = Deadlines::<2>::new();
        assert_eq!(d.handle(0, SET, &[40]), Ok(Program::At(40)));
        assert_eq!(d.handle(1, SET, &[]), Err(Error::BadLength));
        assert_eq!(d.handle(2, SET, &[1]), Err(Error::NoSuchClient));
        assert_eq!(d.handle(0, 9, &[1]), Err(Error::UnknownRequest));
        assert_eq!(d.program(), Program::At(40));
        assert_eq!(d.handle(0, CANCEL, &[]), Ok(Program::Off));
    }
}
