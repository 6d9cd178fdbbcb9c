// SPDX-License-Identifier: BSD-2-Clause
//! The driver PD's loop over the rings, device-independent: take
//! requests, check each against the data region, the disk and the
//! requests in flight, start it on the device in a slot of its own (up to
//! `N` at once), and when the device says one is done, answer it.
//!
//! Order: the device may finish reads and writes in any order. A flush
//! (or barrier) is held until every request started before it has been
//! answered, then started alone, and nothing after it starts until it is
//! answered: it covers every write before it, whatever the device's
//! order, and a device whose flush blocks (virtio-drivers') is never
//! asked for one with other requests in flight. The blk PD drains before
//! a flush as well; the driver does not rely on it.
//!
//! ```
//! # use core::ptr::NonNull;
//! # use guest_ram::SharedBuffer;
//! use blk_queue::driver::{BlockDevice, Serve};
//! use blk_queue::{Client, Code, Driver, Request, Rings, Status, Transfer};
//! struct Instant(Option<usize>);
//! impl BlockDevice for Instant {
//!     fn start(&mut self, slot: usize, _: Code, _: &Transfer) -> Result<(), Status> {
//!         self.0 = Some(slot);
//!         Ok(())
//!     }
//!     fn poll(&mut self) -> Option<(usize, Status)> { self.0.take().map(|s| (s, Status::Ok)) }
//! }
//! let (mut a, mut b) = ([0u8; 16 + 32 * 4], [0u8; 8 + 12 * 4]);
//! # let req = unsafe { SharedBuffer::new(NonNull::new(a.as_mut_ptr()).unwrap(), a.len()) };
//! # let resp = unsafe { SharedBuffer::new(NonNull::new(b.as_mut_ptr()).unwrap(), b.len()) };
//! let rings = Rings::new(req, resp, 4).unwrap();
//! let mut client = Client::new(rings);
//! let mut serve = Serve::<2>::new(Driver::new(rings), 8192, 100);
//! client.enqueue(&Request::new(Code::Read, 0, 3, 2, 9)).unwrap();
//! client.enqueue(&Request::new(Code::Read, 4096, 3, 2, 10)).unwrap(); // past the data region
//! assert_eq!(serve.run(&mut Instant(None)), Ok(true));
//! // The refused one is answered at once, the other when the device is done.
//! let first = client.dequeue().unwrap().unwrap();
//! assert_eq!((first.id, first.status), (10, Status::InvalidParam));
//! let second = client.dequeue().unwrap().unwrap();
//! assert_eq!((second.id, second.status), (9, Status::Ok));
//! ```

use crate::{Code, Driver, Error, Request, Response, Status, Transfer};

/// A block device as the loop drives it.
pub trait BlockDevice {
    /// Starts `code` over `transfer` (already checked against the data
    /// region, the disk and the other requests in flight) in `slot`
    /// (below the loop's `N`, not in use). `Err` answers the request at
    /// once.
    fn start(&mut self, slot: usize, code: Code, transfer: &Transfer) -> Result<(), Status>;
    /// A started request the device has finished: its slot and status.
    /// `None` while none is finished.
    fn poll(&mut self) -> Option<(usize, Status)>;
}

/// The loop's state: the rings, the sizes requests are checked against,
/// and the requests on the device.
#[derive(Debug)]
pub struct Serve<const N: usize> {
    driver: Driver,
    data_len: u64,
    capacity: u64,
    slots: [Option<(Request, Transfer)>; N],
    /// A flush or barrier taken from the ring, waiting for the device to
    /// drain.
    held: Option<Request>,
    served: u64,
}

fn is_barrier(code: Code) -> bool {
    matches!(code, Code::Flush | Code::Barrier)
}

impl<const N: usize> Serve<N> {
    /// A loop over `driver`'s rings for a data region of `data_len` bytes
    /// and a disk of `capacity` blocks.
    pub fn new(driver: Driver, data_len: u64, capacity: u64) -> Self {
        Serve {
            driver,
            data_len,
            capacity,
            slots: [None; N],
            held: None,
            served: 0,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Requests on the device.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether a request is on the device.
    pub fn busy(&self) -> bool {
        self.in_flight() > 0
    }

    /// Runs on every notification from the client and every device
    /// interrupt: answers what the device finished, then starts requests
    /// while there is a free slot and the ring has one (a flush only on an
    /// idle device). Returns whether it answered any (the client is to be
    /// notified). An `Err` is a corrupt ring; what was answered before it
    /// stays answered.
    pub fn run<D: BlockDevice>(&mut self, device: &mut D) -> Result<bool, Error> {
        let mut answered = false;
        // Each pass answers a request or returns; the ring holds at most
        // `capacity` requests, and a hostile client refilling it only
        // delays the return while the driver has work.
        loop {
            let mut progress = false;
            // At most a poll per slot: a device that reports slots that
            // are not in use cannot keep the loop here.
            for _ in 0..N {
                let Some((slot, status)) = device.poll() else {
                    break;
                };
                if let Some((request, _)) = self.slots.get_mut(slot).and_then(Option::take) {
                    self.answer(&request, status)?;
                    answered = true;
                    progress = true;
                }
            }
            while let Some(free) = self.slots.iter().position(Option::is_none) {
                if self.slots.iter().flatten().any(|(r, _)| is_barrier(r.code)) {
                    break;
                }
                let request = match self.held.take() {
                    Some(request) => request,
                    None => match self.driver.dequeue()? {
                        Some(request) => request,
                        None => break,
                    },
                };
                if is_barrier(request.code) && self.busy() {
                    self.held = Some(request);
                    break;
                }
                let started = request
                    .transfer(self.data_len, self.capacity)
                    .and_then(|t| self.disjoint(t))
                    .and_then(|t| device.start(free, request.code, &t).map(|()| t));
                match started {
                    Ok(t) => {
                        if let Some(slot) = self.slots.get_mut(free) {
                            *slot = Some((request, t));
                        }
                    }
                    Err(status) => {
                        self.answer(&request, status)?;
                        answered = true;
                    }
                }
                progress = true;
            }
            if !progress {
                return Ok(answered);
            }
        }
    }

    /// `t` if its data overlaps no request's on the device (two requests
    /// in flight must not share data-region bytes).
    fn disjoint(&self, t: Transfer) -> Result<Transfer, Status> {
        let end = t.data_offset.saturating_add(t.len);
        let clash = self.slots.iter().flatten().any(|(_, o)| {
            t.len > 0
                && o.len > 0
                && t.data_offset < o.data_offset.saturating_add(o.len)
                && o.data_offset < end
        });
        if clash {
            Err(Status::InvalidParam)
        } else {
            Ok(t)
        }
    }

    fn answer(&mut self, request: &Request, status: Status) -> Result<(), Error> {
        let count = if status == Status::Ok && matches!(request.code, Code::Read | Code::Write) {
            request.count
        } else {
            0
        };
        self.served = self.served.saturating_add(1);
        self.driver
            .enqueue(&Response::new(status, count, request.id))
    }
}
