// SPDX-License-Identifier: BSD-2-Clause
//! The driver PD's loop over the rings, device-independent: take a
//! request, check it against the data region and the disk, start it on
//! the device, and when the device says it is done, answer. One request is
//! on the device at a time.
//!
//! ```
//! # use core::ptr::NonNull;
//! # use guest_ram::SharedBuffer;
//! use blk_queue::driver::{BlockDevice, Serve};
//! use blk_queue::{Client, Code, Driver, Request, Rings, Status, Transfer};
//! struct Instant;
//! impl BlockDevice for Instant {
//!     fn start(&mut self, _: Code, _: &Transfer) -> Result<(), Status> { Ok(()) }
//!     fn poll(&mut self) -> Option<Status> { Some(Status::Ok) }
//! }
//! let (mut a, mut b) = ([0u8; 16 + 32 * 4], [0u8; 8 + 12 * 4]);
//! # let req = unsafe { SharedBuffer::new(NonNull::new(a.as_mut_ptr()).unwrap(), a.len()) };
//! # let resp = unsafe { SharedBuffer::new(NonNull::new(b.as_mut_ptr()).unwrap(), b.len()) };
//! let rings = Rings::new(req, resp, 4).unwrap();
//! let mut client = Client::new(rings);
//! let mut serve = Serve::new(Driver::new(rings), 8192, 100);
//! client.enqueue(&Request::new(Code::Read, 0, 3, 2, 9)).unwrap();
//! client.enqueue(&Request::new(Code::Read, 4096, 3, 2, 10)).unwrap(); // past the data region
//! assert_eq!(serve.run(&mut Instant), Ok(true));
//! assert_eq!(client.dequeue().unwrap().unwrap().status, Status::Ok);
//! assert_eq!(client.dequeue().unwrap().unwrap().status, Status::InvalidParam);
//! ```

use crate::{Code, Driver, Error, Request, Response, Status, Transfer};

/// A block device as the loop drives it.
pub trait BlockDevice {
    /// Starts `code` over `transfer` (already checked against the data
    /// region and the disk). `Err` answers the request at once.
    fn start(&mut self, code: Code, transfer: &Transfer) -> Result<(), Status>;
    /// The started request's status once the device has finished it,
    /// `None` while it runs.
    fn poll(&mut self) -> Option<Status>;
}

/// The loop's state: the rings, the sizes requests are checked against,
/// and the request on the device.
#[derive(Debug)]
pub struct Serve {
    driver: Driver,
    data_len: u64,
    capacity: u64,
    current: Option<Request>,
    served: u64,
}

impl Serve {
    /// A loop over `driver`'s rings for a data region of `data_len` bytes
    /// and a disk of `capacity` blocks.
    pub fn new(driver: Driver, data_len: u64, capacity: u64) -> Self {
        Serve {
            driver,
            data_len,
            capacity,
            current: None,
            served: 0,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Whether a request is on the device.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Runs on every notification from the client and every device
    /// interrupt: finishes the request on the device if it is done, then
    /// starts requests until one stays on the device or the ring is empty.
    /// Returns whether it answered any (the client is to be notified). An
    /// `Err` is a corrupt ring; what was answered before it stays answered.
    pub fn run<D: BlockDevice>(&mut self, device: &mut D) -> Result<bool, Error> {
        let mut answered = false;
        // Each pass answers a request or returns; the ring holds at most
        // `capacity` requests, and a hostile client refilling it only
        // delays the return while the driver has work.
        loop {
            if let Some(request) = self.current {
                let Some(status) = device.poll() else {
                    return Ok(answered);
                };
                self.current = None;
                self.answer(&request, status)?;
                answered = true;
            }
            let Some(request) = self.driver.dequeue()? else {
                return Ok(answered);
            };
            let started = request
                .transfer(self.data_len, self.capacity)
                .and_then(|transfer| device.start(request.code, &transfer));
            match started {
                Ok(()) => self.current = Some(request),
                Err(status) => {
                    self.answer(&request, status)?;
                    answered = true;
                }
            }
        }
    }

    fn answer(&mut self, request: &Request, status: Status) -> Result<(), Error> {
        let count = if status == Status::Ok && matches!(request.code, Code::Read | Code::Write) {
            request.count
        } else {
            0
        };
        self.served += 1;
        self.driver
            .enqueue(&Response::new(status, count, request.id))
    }
}
