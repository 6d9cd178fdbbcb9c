// SPDX-License-Identifier: BSD-2-Clause
//! UART input routed to one VM at a time, and held per VM.
//!
//! Every byte typed goes to the VM that has the focus (VM 0 at first).
//! An escape, `Ctrl-\` ([`ESCAPE`], 0x1c), starts a two-byte command:
//!
//! | after `Ctrl-\` | what happens |
//! |---|---|
//! | a digit `d` below `VMS` (and below 10) | the focus moves to VM `d` ([`Routed::Switched`]; the PD says so, e.g. `serial: input to vm1`) |
//! | `Ctrl-\` again | one literal 0x1c goes to the focused VM |
//! | anything else (a digit of no VM included) | the escape is dropped and that byte goes to the focused VM |
//!
//! Only VMs 0 to 9 can be reached from the keyboard; [`Input::focus_on`]
//! moves the focus to any VM.
//!
//! Each VM's bytes wait in a queue of `QUEUE` bytes until its guest posts
//! receive buffers: the PD takes them with [`Input::pending`] and removes
//! what it handed over with [`Input::consume`]. A byte for a full queue is
//! dropped and counted ([`Input::dropped`]); the bytes already queued keep
//! their order.
//!
//! Complexity: every operation is `O(1)`. Memory: `VMS * (QUEUE + 24)`
//! bytes or so.

use crate::{check_vm, Error};

/// `Ctrl-\`: the escape byte.
pub const ESCAPE: u8 = 0x1c;

/// What became of one input byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Queued for VM `vm`.
    Queued {
        /// The VM with the focus.
        vm: usize,
    },
    /// VM `vm`'s queue was full: the byte was dropped (and counted).
    Dropped {
        /// The VM with the focus.
        vm: usize,
    },
    /// An escape: the next byte says what it means.
    Escape,
    /// The focus moved to VM `vm`.
    Switched {
        /// The VM that now has the focus.
        vm: usize,
    },
}

/// A ring of `N` bytes.
#[derive(Clone, Copy)]
struct Queue<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
    dropped: u64,
}

impl<const N: usize> Queue<N> {
    const EMPTY: Self = Queue {
        buf: [0; N],
        head: 0,
        len: 0,
        dropped: 0,
    };

    fn push(&mut self, byte: u8) -> bool {
        if self.len >= N {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        // head < N and len < N, so this is below 2N: no overflow.
        let mut at = self.head + self.len;
        if at >= N {
            at -= N;
        }
        if let Some(slot) = self.buf.get_mut(at) {
            *slot = byte;
            self.len += 1;
        }
        true
    }

    fn pending(&self) -> (&[u8], &[u8]) {
        let first_len = self.len.min(N - self.head);
        let first = self
            .buf
            .get(self.head..self.head + first_len)
            .unwrap_or(&[]);
        let second = self.buf.get(..self.len - first_len).unwrap_or(&[]);
        (first, second)
    }

    fn consume(&mut self, n: usize) {
        // n <= len < ... <= N and head < N.
        let mut head = self.head + n;
        if head >= N {
            head -= N;
        }
        self.head = head;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }
}

/// The UART input of `VMS` VMs, each with a `QUEUE`-byte queue (see the
/// [module docs](self)). `VMS` must be at least 1.
#[derive(Clone)]
pub struct Input<const VMS: usize, const QUEUE: usize> {
    queues: [Queue<QUEUE>; VMS],
    focus: usize,
    escape: bool,
}

impl<const VMS: usize, const QUEUE: usize> Default for Input<VMS, QUEUE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const VMS: usize, const QUEUE: usize> Input<VMS, QUEUE> {
    /// The focus on VM 0, every queue empty.
    pub const fn new() -> Self {
        const { assert!(VMS > 0, "input needs a VM to go to") };
        Input {
            queues: [Queue::EMPTY; VMS],
            focus: 0,
            escape: false,
        }
    }

    /// One byte from the UART. `O(1)`.
    pub fn input(&mut self, byte: u8) -> Routed {
        if self.escape {
            self.escape = false;
            if byte.is_ascii_digit() {
                let vm = usize::from(byte - b'0');
                if vm < VMS {
                    self.focus = vm;
                    return Routed::Switched { vm };
                }
            }
        } else if byte == ESCAPE {
            self.escape = true;
            return Routed::Escape;
        }
        let vm = self.focus;
        let queued = self.queues.get_mut(vm).is_some_and(|q| q.push(byte));
        if queued {
            Routed::Queued { vm }
        } else {
            Routed::Dropped { vm }
        }
    }

    /// The VM that has the focus.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Whether an escape is waiting for its second byte.
    pub fn in_escape(&self) -> bool {
        self.escape
    }

    /// Moves the focus to VM `vm` (any VM, not only 0 to 9), cancelling
    /// an escape in progress.
    pub fn focus_on(&mut self, vm: usize) -> Result<(), Error> {
        self.focus = check_vm(vm, VMS)?;
        self.escape = false;
        Ok(())
    }

    /// VM `vm`'s queued bytes, oldest first, as two slices (the ring's
    /// two parts; the second is empty unless it wraps).
    pub fn pending(&self, vm: usize) -> Result<(&[u8], &[u8]), Error> {
        Ok(self.queue(vm)?.pending())
    }

    /// How many bytes VM `vm` has queued.
    pub fn pending_len(&self, vm: usize) -> Result<usize, Error> {
        Ok(self.queue(vm)?.len)
    }

    /// Removes the oldest `n` of VM `vm`'s queued bytes (what its guest
    /// took). More than are pending is an error, and removes nothing.
    pub fn consume(&mut self, vm: usize, n: usize) -> Result<(), Error> {
        let queue = self
            .queues
            .get_mut(vm)
            .ok_or(Error::NoSuchVm { vm, vms: VMS })?;
        if n > queue.len {
            return Err(Error::NotPending {
                vm,
                asked: n,
                pending: queue.len,
            });
        }
        queue.consume(n);
        Ok(())
    }

    /// How many bytes for VM `vm` were dropped because its queue was full
    /// (saturating).
    pub fn dropped(&self, vm: usize) -> Result<u64, Error> {
        Ok(self.queue(vm)?.dropped)
    }

    fn queue(&self, vm: usize) -> Result<&Queue<QUEUE>, Error> {
        self.queues.get(vm).ok_or(Error::NoSuchVm { vm, vms: VMS })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn drain<const V: usize, const Q: usize>(input: &mut Input<V, Q>, vm: usize) -> Vec<u8> {
        let (a, b) = input.pending(vm).unwrap();
        let all = [a, b].concat();
        input.consume(vm, all.len()).unwrap();
        all
    }

    #[test]
    fn escapes() {
        let mut input = Input::<3, 16>::new();
        assert_eq!(input.input(b'a'), Routed::Queued { vm: 0 });
        assert_eq!(input.input(ESCAPE), Routed::Escape);
        assert!(input.in_escape());
        assert_eq!(input.input(b'2'), Routed::Switched { vm: 2 });
        assert_eq!(input.focus(), 2);
        assert_eq!(input.input(b'b'), Routed::Queued { vm: 2 });
        // A literal Ctrl-\.
        assert_eq!(input.input(ESCAPE), Routed::Escape);
        assert_eq!(input.input(ESCAPE), Routed::Queued { vm: 2 });
        // A digit of no VM, and any other byte: the escape is dropped.
        assert_eq!(input.input(ESCAPE), Routed::Escape);
        assert_eq!(input.input(b'3'), Routed::Queued { vm: 2 });
        assert_eq!(input.input(ESCAPE), Routed::Escape);
        assert_eq!(input.input(b'x'), Routed::Queued { vm: 2 });
        assert_eq!(input.input(ESCAPE), Routed::Escape);
        assert_eq!(input.input(b'0'), Routed::Switched { vm: 0 });
        assert_eq!(drain(&mut input, 0), b"a");
        assert_eq!(drain(&mut input, 2), b"b\x1c3x");
        assert_eq!(drain(&mut input, 1), b"");
    }

    #[test]
    fn full_queues_drop_and_count() {
        let mut input = Input::<2, 4>::new();
        for b in b"abcdef" {
            input.input(*b);
        }
        assert_eq!(input.dropped(0), Ok(2));
        assert_eq!(input.input(b'g'), Routed::Dropped { vm: 0 });
        assert_eq!(input.pending(0), Ok((&b"abcd"[..], &b""[..])));
        input.consume(0, 3).unwrap();
        for b in b"xyz" {
            assert_eq!(input.input(*b), Routed::Queued { vm: 0 });
        }
        // Wrapped: two slices.
        assert_eq!(input.pending(0), Ok((&b"d"[..], &b"xyz"[..])));
        assert_eq!(input.pending_len(0), Ok(4));
        assert_eq!(
            input.consume(0, 5),
            Err(Error::NotPending {
                vm: 0,
                asked: 5,
                pending: 4
            })
        );
        assert_eq!(drain(&mut input, 0), b"dxyz");
        assert_eq!(input.dropped(1), Ok(0));
    }

    #[test]
    fn focus_on_any_vm() {
        let mut input = Input::<12, 4>::new();
        input.input(ESCAPE);
        assert_eq!(input.focus_on(11), Ok(()));
        assert!(!input.in_escape());
        assert_eq!(input.input(b'q'), Routed::Queued { vm: 11 });
        assert_eq!(input.focus_on(12), Err(Error::NoSuchVm { vm: 12, vms: 12 }));
        assert_eq!(input.focus(), 11);
        assert_eq!(
            input.consume(12, 0),
            Err(Error::NoSuchVm { vm: 12, vms: 12 })
        );
    }

    #[test]
    fn zero_capacity_queues_drop_everything() {
        let mut input = Input::<1, 0>::new();
        assert_eq!(input.input(b'a'), Routed::Dropped { vm: 0 });
        assert_eq!(input.pending(0), Ok((&b""[..], &b""[..])));
        assert_eq!(input.consume(0, 0), Ok(()));
    }
}
