// SPDX-License-Identifier: BSD-2-Clause
//! Property test: the server against a model of the client table.
//!
//! Random requests (well-formed, with random ranges, and mutated raw
//! messages) from random channels. For every request the server's status
//! and byte count must equal the model's, and after every request guest
//! RAM must equal the model's image: bytes outside the caller's writable
//! windows never change.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::cell::RefCell;
use core::ptr::NonNull;

use guest_ram::client::Transport;
use guest_ram::protocol::{self, Op, Segment, Status, MSG_WORDS};
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use proptest::prelude::*;

const GPA: u64 = 0x1_0000;
const SIZE: u64 = 0x2000;
/// RAM is [GPA, GPA + 0x1800); the top 2 KiB is backed but not RAM.
const RAM_END: u64 = GPA + 0x1800;
const BUF: [usize; 2] = [256, 100];
const WINDOWS: [&[Window]; 2] = [
    &[
        Window::read_write(GPA, 0x1000),
        Window::read_only(GPA + 0x1000, 0x1000),
    ],
    &[
        Window::read_only(GPA + 0x800, 0x1000),
        Window::read_write(GPA + 0x1400, 0x400),
    ],
];

/// The model's answer to one segment (the server's check order: shape,
/// window, permission, RAM, buffer).
fn check_segment(
    client: usize,
    gpa: u64,
    len: u64,
    offset: Option<u64>,
    write: bool,
) -> Result<(), Status> {
    if len == 0 {
        return Err(Status::ZeroLength);
    }
    let end = gpa.checked_add(len).ok_or(Status::Overflow)?;
    let containing: Vec<&Window> = WINDOWS[client]
        .iter()
        .filter(|w| w.gpa <= gpa && end <= w.gpa + w.len)
        .collect();
    if containing.is_empty() {
        return Err(Status::OutsideWindow);
    }
    if !containing
        .iter()
        .any(|w| if write { w.write } else { w.read })
    {
        return Err(Status::NoPermission);
    }
    if gpa < GPA || end > RAM_END {
        return Err(Status::NotRam);
    }
    if let Some(offset) = offset {
        let buf_end = offset.checked_add(len).ok_or(Status::Overflow)?;
        if buf_end > BUF[client] as u64 {
            return Err(Status::OutsideBuffer);
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Req {
    Copy { op: Op, segs: Vec<(u64, u64, u64)> },
    Fill { gpa: u64, len: u64, byte: u8 },
    Info,
    Raw { label: u64, words: Vec<u64> },
}

fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![8 => GPA - 0x100..GPA + SIZE + 0x100, 1 => Just(u64::MAX - 4), 1 => 0u64..0x100]
}
fn len() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..0x300, 1 => 0x300u64..0x1100, 1 => Just(u64::MAX)]
}
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..300, 1 => Just(u64::MAX - 1)]
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        4 => (prop_oneof![Just(Op::Read), Just(Op::Write)], (gpa(), len(), offset())).prop_map(|(op, s)| Req::Copy { op, segs: vec![s] }),
        3 => (prop_oneof![Just(Op::ReadV), Just(Op::WriteV)], prop::collection::vec((gpa(), len(), offset()), 1..6))
            .prop_map(|(op, segs)| Req::Copy { op, segs }),
        1 => (gpa(), len(), any::<u8>()).prop_map(|(gpa, len, byte)| Req::Fill { gpa, len, byte }),
        1 => Just(Req::Info),
        1 => (0u64..9, prop::collection::vec(any::<u64>(), 0..8)).prop_map(|(label, words)| Req::Raw { label, words }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn server_matches_client_table_model(
        reqs in prop::collection::vec((0usize..3, req(), any::<u8>()), 1..40)
    ) {
        let mut guest: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
        let mut buffers: Vec<Vec<u8>> = BUF.iter().map(|n| vec![0u8; *n]).collect();
        // SAFETY: all vectors live until the end of the test; they are read
        // through references only between calls.
        let region = unsafe { MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), SIZE) };
        let shared: Vec<SharedBuffer> = buffers
            .iter_mut()
            // SAFETY: the memory behind this test mapping outlives every use of it.
            .map(|b| unsafe { SharedBuffer::new(NonNull::new(b.as_mut_ptr()).unwrap(), b.len()) })
            .collect();
        let mut ram: GuestRam<1, 4> = GuestRam::new(&[region]).unwrap();
        ram.register_at(GPA, RAM_END - GPA).unwrap();
        let mut server: Server<2> = Server::new();
        for c in 0..2 {
            server.add_client(ClientConfig::new(c + 1, shared[c], WINDOWS[c]).unwrap()).unwrap();
        }
        let server = RefCell::new(server);
        let mut model_guest: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();

        for (client, req, fill_seed) in reqs {
            // Channel 3 is not a client.
            let channel = client + 1;
            if client < 2 {
                for (i, b) in buffers[client].iter_mut().enumerate() {
                    *b = fill_seed.wrapping_add(i as u8);
                }
            }
            let buf_before: Vec<Vec<u8>> = buffers.clone();
            let mut msg = [0u64; MSG_WORDS];
            let (label, words, want): (u64, usize, Result<u64, Status>) = match &req {
                Req::Copy { op, segs } => {
                    let s: Vec<Segment> = segs.iter().map(|(g, l, o)| Segment::new(*g, *l, *o)).collect();
                    let (label, words) = protocol::encode_copy(*op, &s, &mut msg).unwrap();
                    let write = op.direction() == guest_ram::Direction::ToGuest;
                    let want = if client == 2 {
                        Err(Status::UnknownClient)
                    } else {
                        segs.iter().try_fold(0u64, |total, (g, l, o)| {
                            check_segment(client, *g, *l, Some(*o), write)?;
                            total.checked_add(*l).ok_or(Status::Overflow)
                        })
                    };
                    (label, words, want)
                }
                Req::Fill { gpa, len, byte } => {
                    let (label, words) = protocol::encode_fill(*gpa, *len, *byte, &mut msg);
                    let want = if client == 2 { Err(Status::UnknownClient) } else { check_segment(client, *gpa, *len, None, true).map(|()| *len) };
                    (label, words, want)
                }
                Req::Info => {
                    let (label, words) = protocol::encode_info(&mut msg);
                    (label, words, if client == 2 { Err(Status::UnknownClient) } else { Ok(0) })
                }
                Req::Raw { label, words } => {
                    msg[..words.len()].copy_from_slice(words);
                    let want = if client == 2 {
                        Err(Status::UnknownClient)
                    } else {
                        // Only compare against the protocol's own decoder here.
                        match protocol::decode(*label, words) {
                            Err(s) => Err(s),
                            Ok(_) => { continue; }
                        }
                    };
                    (*label, words.len(), want)
                }
            };
            let mut transport = Local::new(&server, &ram, channel);
            let (rl, rw) = transport.call(label, words, &mut msg);
            let reply = protocol::decode_reply(rl, &msg[..rw]).unwrap();
            match want {
                Err(s) => {
                    prop_assert_eq!((reply.status, reply.bytes), (s, 0));
                    prop_assert_eq!(&buffers, &buf_before);
                }
                Ok(bytes) => {
                    prop_assert_eq!(reply.status, Status::Ok);
                    if !matches!(req, Req::Info) {
                        prop_assert_eq!(reply.bytes, bytes);
                    }
                    // Apply to the model.
                    match &req {
                        Req::Copy { op, segs } if (op.direction() == guest_ram::Direction::ToGuest) => {
                            for (g, l, o) in segs {
                                let (g, l, o) = ((g - GPA) as usize, *l as usize, *o as usize);
                                model_guest[g..g + l].copy_from_slice(&buf_before[client][o..o + l]);
                            }
                        }
                        Req::Copy { segs, .. } => {
                            let mut expect = buf_before[client].clone();
                            for (g, l, o) in segs {
                                let (g, l, o) = ((g - GPA) as usize, *l as usize, *o as usize);
                                expect[o..o + l].copy_from_slice(&model_guest[g..g + l]);
                            }
                            prop_assert_eq!(&buffers[client], &expect);
                        }
                        Req::Fill { gpa, len, byte } => {
                            let g = (gpa - GPA) as usize;
                            model_guest[g..g + *len as usize].fill(*byte);
                        }
                        _ => {}
                    }
                }
            }
            prop_assert_eq!(&guest, &model_guest);
        }
    }
}
