// SPDX-License-Identifier: BSD-2-Clause
//! How a client's request reaches the VMM: the [`Transport`] trait, and
//! [`Local`], the transport that calls a [`Server`] in the same address
//! space (host tests, benchmarks). In a PD the transport is a few lines of
//! `pp_call` glue (see [`client`](crate::client)).
//!
//! This module sits between the two sides: `client` uses the trait,
//! `server` knows neither.

use crate::protocol::MSG_WORDS;
use crate::server::Server;
use crate::GuestRam;

/// One protected procedure call to the VMM.
pub trait Transport {
    /// Sends `msg[..words]` with `label` and waits for the reply, which
    /// replaces the start of `msg`. Returns the reply's label and word
    /// count.
    fn call(&mut self, label: u64, words: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize);
}

/// A [`Transport`] that calls a [`Server`] in the
/// same address space, for host tests and benchmarks. Like the kernel, it
/// copies the message words into the server's own "IPC buffer" and the reply
/// words back, so both sides see exactly the bytes they would on seL4.
pub struct Local<'a, const B: usize, const E: usize, const C: usize> {
    server: &'a core::cell::RefCell<Server<C>>,
    ram: &'a GuestRam<B, E>,
    channel: usize,
    ipc_buffer: [u64; MSG_WORDS],
}

impl<'a, const B: usize, const E: usize, const C: usize> Local<'a, B, E, C> {
    /// A transport calling `server` as `channel`.
    pub fn new(
        server: &'a core::cell::RefCell<Server<C>>,
        ram: &'a GuestRam<B, E>,
        channel: usize,
    ) -> Self {
        Local {
            server,
            ram,
            channel,
            ipc_buffer: [0; MSG_WORDS],
        }
    }
}

impl<const B: usize, const E: usize, const C: usize> Transport for Local<'_, B, E, C> {
    fn call(&mut self, label: u64, words: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
        let words = words.min(MSG_WORDS);
        self.ipc_buffer[..words].copy_from_slice(&msg[..words]);
        let (label, reply_words) = self.server.borrow_mut().handle(
            self.ram,
            self.channel,
            label,
            words,
            &mut self.ipc_buffer,
        );
        let reply_words = reply_words.min(MSG_WORDS);
        msg[..reply_words].copy_from_slice(&self.ipc_buffer[..reply_words]);
        (label, reply_words)
    }
}
