// SPDX-License-Identifier: BSD-2-Clause
//! The serial multiplexer's fuzz harness, shared by `cargo fuzz run mux`
//! and the corpus replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: a sequence of operations, each an opcode byte (`op % 5` the
//! kind, `op / 5 % 4` the VM, 3 being no VM) and its arguments: a push of
//! the next `b % 24` bytes (`b` the byte after the opcode), a flush, one
//! UART input byte, a consume of `b % 10` input bytes, a power-off or
//! restart. Three VMs, 8-byte lines and 8-byte input queues, so that
//! lines are cut and queues fill.
//!
//! What is checked, against a model that keeps per VM everything it sent:
//! the UART sees whole lines only, each the prefix `vm<n>| ` of the VM
//! being pushed or flushed and then only that VM's bytes; per VM the
//! concatenation of the line bodies (without the multiplexer's own line
//! ends) is exactly what it sent, apart from what is held, and nothing
//! is held after a flush; a line the multiplexer cut holds exactly 8
//! bytes; counters agree. Input: every byte routed as the escape rules
//! say, queues in order, full queues dropping and counting. Power: the
//! tracker agrees with a plain array.

use std::collections::VecDeque;

use serial_mux::{Error, Input, Output, PowerTracker, Routed, Uart, ESCAPE};

const VMS: usize = 3;
const LINE: usize = 8;
const QUEUE: usize = 8;

#[derive(Debug, PartialEq)]
enum Event {
    Write(Vec<u8>),
    End,
}

#[derive(Default)]
struct Recorder(Vec<Event>);

impl Uart for Recorder {
    fn write(&mut self, bytes: &[u8]) {
        assert!(!bytes.is_empty(), "empty write");
        self.0.push(Event::Write(bytes.to_vec()));
    }
    fn end_line(&mut self) {
        self.0.push(Event::End);
    }
}

/// One line as the UART received it.
struct Line {
    vm: usize,
    body: Vec<u8>,
    cut: bool,
}

fn parse_prefix(bytes: &[u8]) -> usize {
    let digits = bytes
        .strip_prefix(b"vm")
        .and_then(|rest| rest.strip_suffix(b"| "))
        .unwrap_or_else(|| panic!("{bytes:?} is no prefix"));
    assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
    assert!(digits.len() == 1 || digits[0] != b'0');
    std::str::from_utf8(digits).unwrap().parse().unwrap()
}

/// Splits what one call wrote into whole lines.
fn lines(events: &[Event]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut it = events.iter();
    while let Some(first) = it.next() {
        let Event::Write(prefix) = first else {
            panic!("a line end with no line")
        };
        let mut line = Line {
            vm: parse_prefix(prefix),
            body: Vec::new(),
            cut: false,
        };
        loop {
            match it.next().expect("a line left unfinished") {
                Event::End => {
                    line.cut = true;
                    break;
                }
                Event::Write(bytes) => {
                    let newline = bytes.iter().position(|&b| b == b'\n');
                    line.body.extend_from_slice(bytes);
                    if let Some(i) = newline {
                        assert_eq!(i, bytes.len() - 1, "bytes after a line's end");
                        break;
                    }
                }
            }
        }
        assert!(!line.body.is_empty(), "an empty line");
        out.push(line);
    }
    // The raw byte stream, as a terminal sees it: every line starts with
    // the prefix of the VM it belongs to.
    let mut raw = Vec::new();
    for e in events {
        match e {
            Event::Write(b) => raw.extend_from_slice(b),
            Event::End => raw.extend_from_slice(b"\r\n"),
        }
    }
    let raw_lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(raw_lines.len(), out.len());
    for (raw, line) in raw_lines.iter().zip(&out) {
        let prefix = format!("vm{}| ", line.vm);
        assert!(raw.starts_with(prefix.as_bytes()));
        assert!(raw.ends_with(b"\n"));
    }
    out
}

struct Model {
    sent: [Vec<u8>; VMS],
    got: [Vec<u8>; VMS],
    lines: [u64; VMS],
    focus: usize,
    escape: bool,
    queues: [VecDeque<u8>; VMS],
    dropped: [u64; VMS],
    on: [bool; VMS],
}

pub fn run(data: &[u8]) {
    let mut out = Output::<VMS, LINE>::new();
    let mut input = Input::<VMS, QUEUE>::new();
    let mut power = PowerTracker::<VMS>::new();
    let mut m = Model {
        sent: Default::default(),
        got: Default::default(),
        lines: [0; VMS],
        focus: 0,
        escape: false,
        queues: Default::default(),
        dropped: [0; VMS],
        on: [true; VMS],
    };
    let mut data = data;
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        let vm = usize::from(op / 5 % 4);
        let arg = data.first().copied().unwrap_or(0);
        data = data.get(1..).unwrap_or(&[]);
        let no_vm = Error::NoSuchVm { vm, vms: VMS };
        match op % 5 {
            0 => {
                let len = usize::from(arg % 24).min(data.len());
                let (bytes, rest) = data.split_at(len);
                data = rest;
                let mut uart = Recorder::default();
                let result = out.push(vm, bytes, &mut uart);
                if vm >= VMS {
                    assert_eq!(result, Err(no_vm));
                    assert!(uart.0.is_empty());
                    continue;
                }
                assert_eq!(result, Ok(()));
                m.sent[vm].extend_from_slice(bytes);
                for line in lines(&uart.0) {
                    assert_eq!(line.vm, vm, "another VM's line in a push");
                    if line.cut {
                        assert_eq!(line.body.len(), LINE, "a cut line of the wrong length");
                    } else {
                        assert!(line.body.len() <= LINE + 2);
                        assert!(line.body.len() <= LINE + 1 || line.body.ends_with(b"\r\n"));
                    }
                    m.got[vm].extend_from_slice(&line.body);
                    m.lines[vm] += 1;
                }
            }
            1 => {
                let mut uart = Recorder::default();
                let result = out.flush(vm, &mut uart);
                if vm >= VMS {
                    assert_eq!(result, Err(no_vm));
                    assert!(uart.0.is_empty());
                    continue;
                }
                let held = m.sent[vm].len() - m.got[vm].len();
                assert_eq!(result, Ok(held > 0));
                let emitted = lines(&uart.0);
                assert_eq!(emitted.len(), usize::from(held > 0));
                for line in emitted {
                    assert_eq!(line.vm, vm);
                    assert!(line.cut);
                    assert!(line.body.len() <= LINE + 1);
                    m.got[vm].extend_from_slice(&line.body);
                    m.lines[vm] += 1;
                }
                assert_eq!(out.held(vm), Ok(0));
            }
            2 => {
                let expected = if m.escape {
                    m.escape = false;
                    let digit = usize::from(arg.wrapping_sub(b'0'));
                    if arg.is_ascii_digit() && digit < VMS {
                        m.focus = digit;
                        Some(Routed::Switched { vm: digit })
                    } else {
                        None
                    }
                } else if arg == ESCAPE {
                    m.escape = true;
                    Some(Routed::Escape)
                } else {
                    None
                };
                let expected = expected.unwrap_or_else(|| {
                    let q = &mut m.queues[m.focus];
                    if q.len() < QUEUE {
                        q.push_back(arg);
                        Routed::Queued { vm: m.focus }
                    } else {
                        m.dropped[m.focus] += 1;
                        Routed::Dropped { vm: m.focus }
                    }
                });
                assert_eq!(input.input(arg), expected);
                assert_eq!(input.focus(), m.focus);
                assert_eq!(input.in_escape(), m.escape);
            }
            3 => {
                let n = usize::from(arg % 10);
                let result = input.consume(vm, n);
                if vm >= VMS {
                    assert_eq!(result, Err(no_vm));
                } else if n > m.queues[vm].len() {
                    assert_eq!(
                        result,
                        Err(Error::NotPending {
                            vm,
                            asked: n,
                            pending: m.queues[vm].len()
                        })
                    );
                } else {
                    assert_eq!(result, Ok(()));
                    m.queues[vm].drain(..n);
                }
            }
            _ => {
                if vm >= VMS {
                    assert_eq!(power.powered_off(vm), Err(no_vm));
                    assert_eq!(power.restarted(vm), Err(no_vm));
                } else if arg & 1 == 0 {
                    m.on[vm] = false;
                    assert_eq!(power.powered_off(vm), Ok(m.on.iter().all(|on| !on)));
                } else {
                    m.on[vm] = true;
                    assert_eq!(power.restarted(vm), Ok(()));
                }
                assert_eq!(power.running(), m.on.iter().filter(|on| **on).count());
                assert_eq!(power.all_off(), m.on.iter().all(|on| !on));
            }
        }
        check(&out, &input, &m);
    }
    // Flushing every VM leaves nothing held: all of it came out.
    for vm in 0..VMS {
        let mut uart = Recorder::default();
        out.flush(vm, &mut uart).unwrap();
        for line in lines(&uart.0) {
            assert_eq!(line.vm, vm);
            m.got[vm].extend_from_slice(&line.body);
            m.lines[vm] += 1;
        }
        assert_eq!(m.got[vm], m.sent[vm]);
    }
    check(&out, &input, &m);
}

fn check(out: &Output<VMS, LINE>, input: &Input<VMS, QUEUE>, m: &Model) {
    for vm in 0..VMS {
        // What came out is what was sent, apart from what is held.
        assert!(
            m.sent[vm].starts_with(&m.got[vm]),
            "VM {vm}'s bytes changed"
        );
        let held = m.sent[vm].len() - m.got[vm].len();
        assert_eq!(out.held(vm), Ok(held));
        assert!(held <= LINE + 1);
        assert_eq!(out.bytes(vm), Ok(m.sent[vm].len() as u64));
        assert_eq!(out.lines(vm), Ok(m.lines[vm]));
        // Queued input in order.
        let (a, b) = input.pending(vm).unwrap();
        let queued: Vec<u8> = a.iter().chain(b).copied().collect();
        assert_eq!(queued, m.queues[vm].iter().copied().collect::<Vec<_>>());
        assert_eq!(input.pending_len(vm), Ok(queued.len()));
        assert_eq!(input.dropped(vm), Ok(m.dropped[vm]));
    }
    assert!(out.held(VMS).is_err() && input.pending(VMS).is_err());
}
