// SPDX-License-Identifier: BSD-2-Clause
//! The host side of the C client's test: `microkit_ppcall` and the message
//! registers that `host/microkit.h` declares, answered by a real
//! `guest_ram::Server` that the test installs. Everything a C call does
//! goes through `Server::handle` exactly as it would in the VMM.
#![allow(
    unsafe_code,
    reason = "the C ABI: exported unmangled symbols and calls into the compiled C self-test"
)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};

use guest_ram::protocol::MSG_WORDS;

/// `microkit_msginfo` of `host/microkit.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MsgInfo {
    /// The label.
    pub label: u64,
    /// The word count.
    pub count: u64,
}

/// `struct c_selftest_layout` of `selftest.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// A gpa in a read-write window.
    pub rw: u64,
    /// A gpa in a read-only window.
    pub ro: u64,
    /// A gpa in no window.
    pub outside: u64,
    /// A gpa in a writable window that is not RAM.
    pub not_ram: u64,
}

/// `guest_ram_client_t` of `guest_ram_client.h`.
#[repr(C)]
#[derive(Debug)]
pub struct CClient {
    /// The channel.
    pub channel: u32,
    /// The shared buffer.
    pub buffer: *mut u8,
    /// Its length.
    pub buffer_len: usize,
}

/// The server side: `(channel, label, count, registers) -> (label, count)`.
pub type Handler = Box<dyn FnMut(usize, u64, usize, &mut [u64]) -> (u64, usize)>;

thread_local! {
    static MRS: RefCell<[u64; MSG_WORDS]> = const { RefCell::new([0; MSG_WORDS]) };
    static HANDLER: RefCell<Option<Handler>> = RefCell::new(None);
}

/// Installs the server that answers this thread's C calls.
pub fn set_handler(handler: Handler) {
    HANDLER.with(|h| *h.borrow_mut() = Some(handler));
}

#[no_mangle]
extern "C" fn microkit_ppcall(ch: u32, info: MsgInfo) -> MsgInfo {
    HANDLER.with(|h| {
        let mut h = h.borrow_mut();
        let handler = h.as_mut().expect("no server installed");
        MRS.with(|mrs| {
            let count = (info.count as usize).min(MSG_WORDS);
            let (label, words) = handler(ch as usize, info.label, count, &mut mrs.borrow_mut()[..]);
            MsgInfo {
                label,
                count: words as u64,
            }
        })
    })
}

#[no_mangle]
extern "C" fn microkit_mr_get(mr: u8) -> u64 {
    MRS.with(|m| m.borrow().get(usize::from(mr)).copied().unwrap_or(0))
}

#[no_mangle]
extern "C" fn microkit_mr_set(mr: u8, value: u64) {
    MRS.with(|m| {
        if let Some(slot) = m.borrow_mut().get_mut(usize::from(mr)) {
            *slot = value;
        }
    })
}

type Report = extern "C" fn(*const c_char, c_int);

extern "C" {
    fn c_client_selftest(
        c: *mut CClient,
        layout: Layout,
        report: Report,
        total: *mut c_int,
    ) -> c_int;
}

thread_local! {
    static LINES: RefCell<Vec<(String, bool)>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn collect(name: *const c_char, ok: c_int) {
    // SAFETY: the C self-test passes NUL-terminated string literals.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    LINES.with(|l| l.borrow_mut().push((name, ok != 0)));
}

/// Runs the C self-test as `client`; returns its checks and outcomes.
pub fn run_c_selftest(client: &mut CClient, layout: Layout) -> (i32, i32, Vec<(String, bool)>) {
    LINES.with(|l| l.borrow_mut().clear());
    let mut total: c_int = 0;
    // SAFETY: `client` points at a live buffer of `buffer_len` bytes and
    // the compiled self-test only uses it through guest_ram_client.h.
    let passed = unsafe { c_client_selftest(client, layout, collect, &mut total) };
    (passed, total, LINES.with(|l| l.borrow().clone()))
}
