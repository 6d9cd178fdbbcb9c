// SPDX-License-Identifier: BSD-2-Clause
//! Proptest: random interleavings of pushes and flushes of several VMs'
//! output, byte for byte against a plain model of the rules: a VM's
//! bytes wait until its `\n`; more than `LINE` bytes with no `\n` are cut
//! into `LINE`-byte lines ended `\r\n` (a full line and one `\r` wait for
//! a `\n` that may end them); a flush ends what waits with `\r\n`.

use proptest::prelude::*;
use serial_mux::Output;

const VMS: usize = 3;
const LINE: usize = 5;

#[derive(Clone, Debug)]
enum Op {
    Push(usize, Vec<u8>),
    Flush(usize),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(b'\n'),
        2 => Just(b'\r'),
        6 => b'a'..=b'z',
        1 => any::<u8>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..VMS + 1, prop::collection::vec(byte(), 0..20)).prop_map(|(vm, b)| Op::Push(vm, b)),
        1 => (0..VMS + 1).prop_map(Op::Flush),
    ]
}

/// The rules, one byte at a time, with an unbounded buffer.
#[derive(Default)]
struct Model {
    pending: [Vec<u8>; VMS],
    uart: Vec<u8>,
}

impl Model {
    fn line(&mut self, vm: usize, body: &[u8], end: &[u8]) {
        self.uart.extend_from_slice(format!("vm{vm}| ").as_bytes());
        self.uart.extend_from_slice(body);
        self.uart.extend_from_slice(end);
    }

    fn push(&mut self, vm: usize, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let body = std::mem::take(&mut self.pending[vm]);
                self.line(vm, &body, b"\n");
                continue;
            }
            self.pending[vm].push(b);
            let p = &self.pending[vm];
            if p.len() > LINE && !(p.len() == LINE + 1 && p[LINE] == b'\r') {
                let rest = self.pending[vm].split_off(LINE);
                let piece = std::mem::replace(&mut self.pending[vm], rest);
                self.line(vm, &piece, b"\r\n");
            }
        }
    }

    fn flush(&mut self, vm: usize) -> bool {
        let body = std::mem::take(&mut self.pending[vm]);
        if !body.is_empty() {
            self.line(vm, &body, b"\r\n");
        }
        !body.is_empty()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 512 }))]
    #[test]
    fn output_matches_the_model(ops in prop::collection::vec(op(), 0..60)) {
        let mut out = Output::<VMS, LINE>::new();
        let mut model = Model::default();
        let mut uart = Vec::new();
        for op in ops {
            let mut sink = |b: &[u8]| uart.extend_from_slice(b);
            match op {
                Op::Push(vm, bytes) => {
                    let result = out.push(vm, &bytes, &mut sink);
                    prop_assert_eq!(result.is_ok(), vm < VMS);
                    if vm < VMS {
                        model.push(vm, &bytes);
                    }
                }
                Op::Flush(vm) => {
                    let result = out.flush(vm, &mut sink);
                    if vm < VMS {
                        prop_assert_eq!(result, Ok(model.flush(vm)));
                    } else {
                        prop_assert!(result.is_err());
                    }
                }
            }
            prop_assert_eq!(&uart, &model.uart);
            for vm in 0..VMS {
                prop_assert_eq!(out.held(vm), Ok(model.pending[vm].len()));
            }
        }
    }
}
