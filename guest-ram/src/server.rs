// SPDX-License-Identifier: BSD-2-Clause
//! The VMM side of the copy service: checks each client request against
//! that client's entry in a table fixed at start-up, then copies with
//! [`GuestRam`]'s access functions.
//!
//! The PD glue is one call per PPC:
//!
//! ```ignore
//! fn protected(&mut self, channel: Channel, info: MessageInfo) -> Result<MessageInfo, Self::Error> {
//!     let (label, words) = with_msg_regs_mut(|regs| {
//!         self.server.handle(&self.ram, channel.index(), info.label(), info.count(), regs)
//!     });
//!     Ok(MessageInfo::new(label, words))
//! }
//! ```

use core::fmt;

pub use crate::protocol::Window;
use crate::protocol::{self, Request, Segment, Status, WindowDesc, MAX_WINDOWS, MSG_WORDS};
use crate::{Direction, Error, GuestRam, SharedBuffer};

/// One client PD: the Microkit channel it calls on, its shared buffer as
/// mapped in the VMM, and its windows into guest RAM.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Microkit channel id of the client, from the VMM's end (0..=62).
    pub channel: usize,
    /// The client's shared buffer, as mapped into the VMM PD.
    pub buffer: SharedBuffer,
    /// Where the client may read and write guest RAM.
    pub windows: heapless::Vec<Window, MAX_WINDOWS>,
}

impl ClientConfig {
    /// A client with the given windows.
    ///
    /// Errors: more than [`MAX_WINDOWS`] windows.
    pub fn new(
        channel: usize,
        buffer: SharedBuffer,
        windows: &[Window],
    ) -> Result<Self, ConfigError> {
        Ok(ClientConfig {
            channel,
            buffer,
            windows: heapless::Vec::from_slice(windows).map_err(|_| ConfigError::TooManyWindows)?,
        })
    }
}

/// Why a client table entry was refused at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The table already has `C` clients.
    TooManyClients,
    /// Two entries for one channel.
    DuplicateChannel,
    /// More than [`MAX_WINDOWS`] windows.
    TooManyWindows,
    /// A window of length zero, whose end overflows, or with no permission.
    BadWindow,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::TooManyClients => "client table is full",
            ConfigError::DuplicateChannel => "channel already has a client entry",
            ConfigError::TooManyWindows => "too many windows for one client",
            ConfigError::BadWindow => "window is empty, overflows, or permits nothing",
        })
    }
}

impl core::error::Error for ConfigError {}

/// How many refusals per client are logged one by one; after that only
/// every power-of-two-th, so a misbehaving client cannot flood the console.
const LOG_EVERY_REFUSAL: u32 = 8;

struct Entry {
    config: ClientConfig,
    refusals: u32,
}

/// The copy server for up to `C` clients. `O(C)` client lookup (C is a
/// handful of PDs), `O(segments × windows)` request checking.
pub struct Server<const C: usize> {
    clients: heapless::Vec<Entry, C>,
    unknown_refusals: u32,
}

impl<const C: usize> Default for Server<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a request that passed its checks and was carried out replies.
enum Reply {
    /// `Ok` and a byte count.
    Bytes(u64),
    /// The client's buffer size and windows.
    Info,
}

impl<const C: usize> Server<C> {
    /// An empty client table.
    pub const fn new() -> Self {
        Server {
            clients: heapless::Vec::new(),
            unknown_refusals: 0,
        }
    }

    /// Adds a client. Done once per client at start-up.
    pub fn add_client(&mut self, config: ClientConfig) -> Result<(), ConfigError> {
        for w in config.windows.iter() {
            let ok = w.len != 0 && w.gpa.checked_add(w.len).is_some() && (w.read || w.write);
            if !ok {
                return Err(ConfigError::BadWindow);
            }
        }
        if self.client(config.channel).is_some() {
            return Err(ConfigError::DuplicateChannel);
        }
        self.clients
            .push(Entry {
                config,
                refusals: 0,
            })
            .map_err(|_| ConfigError::TooManyClients)
    }

    fn client(&self, channel: usize) -> Option<usize> {
        self.clients
            .iter()
            .position(|e| e.config.channel == channel)
    }

    /// Refusals so far from `channel` (for tests and statistics).
    pub fn refusals(&self, channel: usize) -> Option<u32> {
        Some(self.clients[self.client(channel)?].refusals)
    }

    /// Handles one PPC from `channel`: `label` and `words` are the
    /// `MessageInfo`'s label and count, `regs` the message registers, which
    /// hold the request on entry and the reply on return. Returns the reply
    /// label and word count. Never panics, whatever the registers hold.
    pub fn handle<const B: usize, const E: usize>(
        &mut self,
        ram: &GuestRam<B, E>,
        channel: usize,
        label: u64,
        words: usize,
        regs: &mut [u64],
    ) -> (u64, usize) {
        let Some(index) = self.client(channel) else {
            self.unknown_refusals = self.unknown_refusals.saturating_add(1);
            if should_log(self.unknown_refusals) {
                log::warn!(
                    "guest-ram: refused call on channel {channel}: {} (refusal #{})",
                    Status::UnknownClient,
                    self.unknown_refusals
                );
            }
            return protocol::encode_reply(Status::UnknownClient, 0, regs);
        };
        let Some(entry) = self.clients.get_mut(index) else {
            return protocol::encode_reply(Status::Internal, 0, regs);
        };
        // The request is read where it lies in `regs` and carried out
        // before the reply overwrites it.
        let result = match regs.get(..words.min(MSG_WORDS)) {
            Some(msg) if words <= MSG_WORDS => {
                protocol::decode(label, msg).and_then(|request| serve(ram, &entry.config, request))
            }
            _ => Err(Status::Malformed),
        };
        match result {
            Ok(Reply::Bytes(n)) => protocol::encode_reply(Status::Ok, n, regs),
            Ok(Reply::Info) => {
                let mut descs: heapless::Vec<WindowDesc, MAX_WINDOWS> = heapless::Vec::new();
                for w in entry.config.windows.iter() {
                    let _ = descs.push(w.desc());
                }
                protocol::encode_info_reply(entry.config.buffer.len() as u64, &descs, regs)
            }
            Err(status) => {
                entry.refusals = entry.refusals.saturating_add(1);
                if should_log(entry.refusals) {
                    log::warn!(
                        "guest-ram: refused op {label} from channel {channel}: {status} (refusal #{})",
                        entry.refusals
                    );
                }
                protocol::encode_reply(status, 0, regs)
            }
        }
    }
}

fn should_log(n: u32) -> bool {
    n <= LOG_EVERY_REFUSAL || n.is_power_of_two()
}

/// Checks and carries out one decoded request, which still lies in the
/// message registers; the caller writes the reply once it is done.
fn serve<const B: usize, const E: usize>(
    ram: &GuestRam<B, E>,
    client: &ClientConfig,
    request: Request<'_>,
) -> Result<Reply, Status> {
    match request {
        Request::Info => Ok(Reply::Info),
        Request::Ping => Ok(Reply::Bytes(0)),
        Request::Fill { gpa, len, byte } => {
            check_guest(ram, client, gpa, len, Direction::ToGuest)?;
            ram.fill(gpa, len, byte).map_err(internal)?;
            Ok(Reply::Bytes(len))
        }
        Request::Copy { op, segments } => {
            let direction = op.direction();
            // Every segment is checked before any byte moves.
            let mut total: u64 = 0;
            for segment in segments.iter() {
                let len = check_segment(ram, client, &segment, direction)?;
                total = total.checked_add(len).ok_or(Status::Overflow)?;
            }
            for (i, segment) in segments.iter().enumerate() {
                // Segments reach the guest in their order, each before the
                // next, as separate calls would: a virtqueue's used
                // elements before its used index, its available index
                // before the entries it publishes, in one call.
                if i > 0 {
                    core::sync::atomic::fence(core::sync::atomic::Ordering::AcqRel);
                }
                let (gpa, len, offset) = (segment.gpa, segment.len, segment.buf_offset);
                // `check_segment` checked this range is RAM, against the
                // same `ram`, which nothing can change while we hold it.
                let end = gpa.checked_add(len).ok_or(Status::Overflow)?;
                let done =
                    ram.copy_buffer_ram_checked(gpa, end, len, &client.buffer, offset, direction);
                // Everything was checked above; a failure here is a VMM bug,
                // reported rather than panicked on.
                done.map_err(internal)?;
            }
            // A client's accesses reach the guest in the order it made them,
            // across calls too: the stores of this call before those of the
            // next (a virtqueue's used elements before its used index), the
            // loads before the next call's loads (the available index
            // before the entries it publishes). Acquire-release orders
            // exactly that: `dmb ish` on Arm, nothing but the compiler on
            // x86, whose stores and loads are not reordered among
            // themselves (SeqCst would add an `mfence` there).
            core::sync::atomic::fence(core::sync::atomic::Ordering::AcqRel);
            Ok(Reply::Bytes(total))
        }
    }
}

fn internal(e: Error) -> Status {
    log::error!("guest-ram: copy failed after its checks passed: {e}");
    Status::Internal
}

/// The guest-side checks, in order: shape, window, permission, RAM.
fn check_guest<const B: usize, const E: usize>(
    ram: &GuestRam<B, E>,
    client: &ClientConfig,
    gpa: u64,
    len: u64,
    direction: Direction,
) -> Result<(), Status> {
    if len == 0 {
        return Err(Status::ZeroLength);
    }
    let end = gpa.checked_add(len).ok_or(Status::Overflow)?;
    let mut inside = client
        .windows
        .iter()
        .filter(|w| w.contains(gpa, end))
        .peekable();
    if inside.peek().is_none() {
        return Err(Status::OutsideWindow);
    }
    if !inside.any(|w| w.permits(direction)) {
        return Err(Status::NoPermission);
    }
    ram.check_ram(gpa, len).map_err(|_| Status::NotRam)?;
    Ok(())
}

/// A copy segment's checks: the guest side, then the buffer side.
fn check_segment<const B: usize, const E: usize>(
    ram: &GuestRam<B, E>,
    client: &ClientConfig,
    segment: &Segment,
    direction: Direction,
) -> Result<u64, Status> {
    let (gpa, len, offset) = (segment.gpa, segment.len, segment.buf_offset);
    check_guest(ram, client, gpa, len, direction)?;
    let buf_end = offset.checked_add(len).ok_or(Status::Overflow)?;
    if buf_end > client.buffer.len() as u64 {
        return Err(Status::OutsideBuffer);
    }
    Ok(len)
}
