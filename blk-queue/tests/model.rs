// SPDX-License-Identifier: BSD-2-Clause
//! Model proptests of the rings.
//!
//! - Honest sides, any interleaving: every enqueue, dequeue and `Full`
//!   matches two bounded FIFOs.
//! - One side honest, the other writing anything anywhere in the shared
//!   memory (indices, records, padding): the honest side never panics,
//!   never writes a byte the other side owns, reports an index more than a
//!   capacity away as `BadIndex` (and moves nothing), and otherwise reads
//!   exactly the record at its index.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the shared mappings; it outlives the buffers"
)]

use std::collections::VecDeque;
use std::ptr::NonNull;

use blk_queue::{Client, Code, Driver, Error, Request, Response, Rings, Status};
use guest_ram::SharedBuffer;
use proptest::prelude::*;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: each test keeps `memory` alive while the buffer is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

fn code(n: u8) -> Code {
    match n % 5 {
        0 => Code::Read,
        1 => Code::Write,
        2 => Code::Flush,
        3 => Code::Barrier,
        _ => Code::Unknown(u32::from(n) + 100),
    }
}

fn status(n: u8) -> Status {
    match n % 6 {
        0 => Status::Ok,
        1 => Status::ErrUnspec,
        2 => Status::InvalidParam,
        3 => Status::Io,
        4 => Status::NoDevice,
        _ => Status::Unknown(u32::from(n) + 100),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Request(u8, u64, u64, u16, u32),
    TakeRequest,
    Respond(u8, u16, u32),
    TakeResponse,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(|(c, o, b, n, i)| Op::Request(c, o, b, n, i)),
        Just(Op::TakeRequest),
        (any::<u8>(), any::<u16>(), any::<u32>()).prop_map(|(s, n, i)| Op::Respond(s, n, i)),
        Just(Op::TakeResponse),
    ]
}

proptest! {
    #[test]
    fn honest_sides_match_two_fifos(capacity in 1u32..6, ops in prop::collection::vec(op(), 0..200)) {
        let cap = capacity as usize;
        let mut req = vec![0u8; Rings::request_bytes(cap)];
        let mut resp = vec![0u8; Rings::response_bytes(cap)];
        let rings = Rings::new(buffer(&mut req), buffer(&mut resp), capacity).unwrap();
        let (mut client, mut driver) = (Client::new(rings), Driver::new(rings));
        let (mut requests, mut responses) = (VecDeque::new(), VecDeque::new());
        for op in ops {
            match op {
                Op::Request(c, o, b, n, i) => {
                    let r = Request::new(code(c), o, b, n, i);
                    let want = if requests.len() == cap { Err(Error::Full) } else { Ok(()) };
                    prop_assert_eq!(client.enqueue(&r), want);
                    if want.is_ok() { requests.push_back(r); }
                }
                Op::TakeRequest => prop_assert_eq!(driver.dequeue(), Ok(requests.pop_front())),
                Op::Respond(s, n, i) => {
                    let r = Response::new(status(s), n, i);
                    let want = if responses.len() == cap { Err(Error::Full) } else { Ok(()) };
                    prop_assert_eq!(driver.enqueue(&r), want);
                    if want.is_ok() { responses.push_back(r); }
                }
                Op::TakeResponse => prop_assert_eq!(client.dequeue(), Ok(responses.pop_front())),
            }
        }
    }
}

/// A hostile side's move: `len` bytes of `fill` at `offset` of one buffer
/// (offsets folded into the buffer, so indices are hit often).
#[derive(Clone, Debug)]
enum Hostile {
    Honest(Op),
    Scribble {
        resp: bool,
        offset: usize,
        bytes: Vec<u8>,
    },
    /// Sets the other side's index to ours + `delta` (near misses).
    Index {
        resp: bool,
        delta: i8,
    },
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        op().prop_map(Hostile::Honest),
        (
            any::<bool>(),
            any::<usize>(),
            prop::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(resp, offset, bytes)| Hostile::Scribble {
                resp,
                offset,
                bytes
            }),
        (any::<bool>(), any::<i8>()).prop_map(|(resp, delta)| Hostile::Index { resp, delta }),
    ]
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

proptest! {
    /// The client is honest; the driver's side of the memory is anyone's.
    #[test]
    fn a_hostile_driver_cannot_hurt_the_client(capacity in 1u32..6, ops in prop::collection::vec(hostile(), 0..200)) {
        let cap = capacity as usize;
        let mut req = vec![0u8; Rings::request_bytes(cap)];
        let mut resp = vec![0u8; Rings::response_bytes(cap)];
        let (rb, sb) = (buffer(&mut req), buffer(&mut resp));
        let rings = Rings::new(rb, sb, capacity).unwrap();
        let mut client = Client::new(rings);
        // The client's own indices, kept by the model.
        let (mut tail, mut head) = (0u32, 0u32);
        for op in ops {
            let mut req_now = vec![0u8; rb.len()];
            let mut resp_now = vec![0u8; sb.len()];
            rb.read(0, &mut req_now).unwrap();
            sb.read(0, &mut resp_now).unwrap();
            match op {
                Hostile::Scribble { resp, offset, bytes } => {
                    let b = if resp { sb } else { rb };
                    let at = offset % b.len();
                    let n = bytes.len().min(b.len() - at);
                    b.write(at, &bytes[..n]).unwrap();
                }
                Hostile::Index { resp, delta } => {
                    // The driver's indices: the request ring's head, the
                    // response ring's tail.
                    let (b, at, base) = if resp { (sb, 4, head) } else { (rb, 0, tail) };
                    b.write(at, &base.wrapping_add(delta as u32).to_le_bytes()).unwrap();
                }
                Hostile::Honest(Op::Request(c, o, b, n, i)) => {
                    let r = Request::new(code(c), o, b, n, i);
                    let theirs = le32(&req_now, 0);
                    let used = tail.wrapping_sub(theirs);
                    let got = client.enqueue(&r);
                    let mut after = vec![0u8; rb.len()];
                    rb.read(0, &mut after).unwrap();
                    if used > capacity {
                        prop_assert_eq!(got, Err(Error::BadIndex { head: theirs, tail }));
                        prop_assert_eq!(&after, &req_now);
                    } else if used == capacity {
                        prop_assert_eq!(got, Err(Error::Full));
                        prop_assert_eq!(&after, &req_now);
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        tail = tail.wrapping_add(1);
                        // Only the record and the tail changed.
                        let slot = 16 + 32 * ((tail.wrapping_sub(1) % capacity) as usize);
                        prop_assert_eq!(le32(&after, 4), tail);
                        prop_assert_eq!(&after[..4], &req_now[..4]);
                        prop_assert_eq!(&after[8..slot], &req_now[8..slot]);
                        prop_assert_eq!(&after[slot + 32..], &req_now[slot + 32..]);
                    }
                }
                Hostile::Honest(Op::TakeResponse) => {
                    let theirs = le32(&resp_now, 4);
                    let waiting = theirs.wrapping_sub(head);
                    let got = client.dequeue();
                    let mut after = vec![0u8; sb.len()];
                    sb.read(0, &mut after).unwrap();
                    if waiting > capacity {
                        prop_assert_eq!(got, Err(Error::BadIndex { head, tail: theirs }));
                        prop_assert_eq!(&after, &resp_now);
                    } else if waiting == 0 {
                        prop_assert_eq!(got, Ok(None));
                        prop_assert_eq!(&after, &resp_now);
                    } else {
                        let slot = 8 + 12 * ((head % capacity) as usize);
                        let record = &resp_now[slot..slot + 12];
                        let want = Response::new(
                            match le32(record, 0) { 0 => Status::Ok, 1 => Status::ErrUnspec, 2 => Status::InvalidParam, 3 => Status::Io, 4 => Status::NoDevice, n => Status::Unknown(n) },
                            u16::from_le_bytes([record[4], record[5]]),
                            le32(record, 8),
                        );
                        prop_assert_eq!(got, Ok(Some(want)));
                        head = head.wrapping_add(1);
                        prop_assert_eq!(le32(&after, 0), head);
                        prop_assert_eq!(&after[4..], &resp_now[4..]);
                    }
                }
                // The driver's own moves are the hostile ones above.
                Hostile::Honest(_) => {}
            }
        }
    }

    /// The driver is honest; the client's side of the memory is anyone's.
    #[test]
    fn a_hostile_client_cannot_hurt_the_driver(capacity in 1u32..6, ops in prop::collection::vec(hostile(), 0..200)) {
        let cap = capacity as usize;
        let mut req = vec![0u8; Rings::request_bytes(cap)];
        let mut resp = vec![0u8; Rings::response_bytes(cap)];
        let (rb, sb) = (buffer(&mut req), buffer(&mut resp));
        let rings = Rings::new(rb, sb, capacity).unwrap();
        let mut driver = Driver::new(rings);
        let (mut head, mut tail) = (0u32, 0u32);
        for op in ops {
            let mut req_now = vec![0u8; rb.len()];
            let mut resp_now = vec![0u8; sb.len()];
            rb.read(0, &mut req_now).unwrap();
            sb.read(0, &mut resp_now).unwrap();
            match op {
                Hostile::Scribble { resp, offset, bytes } => {
                    let b = if resp { sb } else { rb };
                    let at = offset % b.len();
                    let n = bytes.len().min(b.len() - at);
                    b.write(at, &bytes[..n]).unwrap();
                }
                Hostile::Index { resp, delta } => {
                    // The client's indices: the request ring's tail, the
                    // response ring's head.
                    let (b, at, base) = if resp { (sb, 0, tail) } else { (rb, 4, head) };
                    b.write(at, &base.wrapping_add(delta as u32).to_le_bytes()).unwrap();
                }
                Hostile::Honest(Op::TakeRequest) => {
                    let theirs = le32(&req_now, 4);
                    let waiting = theirs.wrapping_sub(head);
                    let got = driver.dequeue();
                    let mut after = vec![0u8; rb.len()];
                    rb.read(0, &mut after).unwrap();
                    if req_now[8] != 0 || waiting == 0 {
                        prop_assert_eq!(got, Ok(None));
                        prop_assert_eq!(&after, &req_now);
                    } else if waiting > capacity {
                        prop_assert_eq!(got, Err(Error::BadIndex { head, tail: theirs }));
                        prop_assert_eq!(&after, &req_now);
                    } else {
                        let got = got.unwrap().unwrap();
                        let slot = 16 + 32 * ((head % capacity) as usize);
                        let r = &req_now[slot..slot + 32];
                        prop_assert_eq!(got.io_offset, u64::from_le_bytes(r[8..16].try_into().unwrap()));
                        prop_assert_eq!(got.block, u64::from_le_bytes(r[16..24].try_into().unwrap()));
                        prop_assert_eq!(got.count, u16::from_le_bytes([r[24], r[25]]));
                        prop_assert_eq!(got.id, le32(r, 28));
                        head = head.wrapping_add(1);
                        prop_assert_eq!(le32(&after, 0), head);
                        prop_assert_eq!(&after[4..], &req_now[4..]);
                    }
                }
                Hostile::Honest(Op::Respond(s, n, i)) => {
                    let theirs = le32(&resp_now, 0);
                    let used = tail.wrapping_sub(theirs);
                    let got = driver.enqueue(&Response::new(status(s), n, i));
                    let mut after = vec![0u8; sb.len()];
                    sb.read(0, &mut after).unwrap();
                    if used > capacity {
                        prop_assert_eq!(got, Err(Error::BadIndex { head: theirs, tail }));
                        prop_assert_eq!(&after, &resp_now);
                    } else if used == capacity {
                        prop_assert_eq!(got, Err(Error::Full));
                        prop_assert_eq!(&after, &resp_now);
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        let slot = 8 + 12 * ((tail % capacity) as usize);
                        tail = tail.wrapping_add(1);
                        prop_assert_eq!(le32(&after, 4), tail);
                        prop_assert_eq!(&after[..4], &resp_now[..4]);
                        prop_assert_eq!(&after[8..slot], &resp_now[8..slot]);
                        prop_assert_eq!(&after[slot + 12..], &resp_now[slot + 12..]);
                    }
                }
                Hostile::Honest(_) => {}
            }
        }
    }
}

proptest! {
    /// Any request a client can write is either refused with
    /// `InvalidParam` or a transfer inside the data region and the disk,
    /// against a model in 128-bit arithmetic (no overflow to get wrong).
    #[test]
    fn transfer_matches_a_wide_model(
        c in any::<u8>(),
        offset in prop_oneof![any::<u64>(), 0u64..(1 << 22)],
        block in prop_oneof![any::<u64>(), 0u64..300],
        count in any::<u16>(),
        data_len in prop_oneof![any::<u64>(), 0u64..(1 << 22)],
        capacity in prop_oneof![any::<u64>(), 0u64..300],
    ) {
        let code = code(c);
        let got = Request::new(code, offset, block, count, 0).transfer(data_len, capacity);
        match code {
            Code::Flush | Code::Barrier => prop_assert_eq!(got.map(|t| t.len), Ok(0)),
            Code::Unknown(_) => prop_assert_eq!(got, Err(Status::InvalidParam)),
            Code::Read | Code::Write => {
                let len = u128::from(count) * 4096;
                let ok = count > 0
                    && u128::from(offset) + len <= u128::from(data_len)
                    && u128::from(block) + u128::from(count) <= u128::from(capacity)
                    && u128::from(block) * 8 <= u128::from(u64::MAX);
                if ok {
                    let t = got.unwrap();
                    prop_assert_eq!(t.data_offset as u64, offset);
                    prop_assert_eq!(t.len as u128, len);
                    prop_assert_eq!(u128::from(t.sector), u128::from(block) * 8);
                } else {
                    prop_assert_eq!(got, Err(Status::InvalidParam));
                }
            }
        }
    }
}
