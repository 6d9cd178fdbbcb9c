// SPDX-License-Identifier: BSD-2-Clause
//! Proptests: random set/cancel/fired sequences (through the wire
//! protocol, with malformed requests among them) against a model that
//! keeps a plain array of deadlines; and the protocol's decoder against
//! its table, for any label and any number of words.

use proptest::prelude::*;
use timer_mux::protocol::{self, Request, CANCEL, SET};
use timer_mux::{Deadlines, Error, Program};

const CLIENTS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// A request from `client` (possibly no client): label and words.
    Call(usize, u64, Vec<u64>),
    Fired(u64),
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, any::<u64>(), Just(u64::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..CLIENTS + 1, time()).prop_map(|(c, t)| Op::Call(c, SET, vec![t])),
        2 => (0..CLIENTS + 1).prop_map(|c| Op::Call(c, CANCEL, vec![])),
        1 => (0..CLIENTS + 1, 0..4u64, prop::collection::vec(time(), 0..3))
            .prop_map(|(c, l, w)| Op::Call(c, l, w)),
        3 => time().prop_map(Op::Fired),
    ]
}

fn expected_program(model: &[Option<u64>; CLIENTS]) -> Program {
    model
        .iter()
        .flatten()
        .min()
        .map_or(Program::Off, |t| Program::At(*t))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 1024 }))]

    #[test]
    fn deadlines_match_the_model(ops in prop::collection::vec(op(), 0..40)) {
        let mut timer = Deadlines::<CLIENTS>::new();
        let mut model: [Option<u64>; CLIENTS] = [None; CLIENTS];
        for op in ops {
            match op {
                Op::Call(client, label, words) => {
                    let result = timer.handle(client, label, &words);
                    let expected = match (label, words.as_slice()) {
                        (SET, [at]) if client < CLIENTS => {
                            model[client] = Some(*at);
                            Ok(expected_program(&model))
                        }
                        (CANCEL, []) if client < CLIENTS => {
                            model[client] = None;
                            Ok(expected_program(&model))
                        }
                        (SET, [_]) | (CANCEL, []) => Err(Error::NoSuchClient),
                        (SET | CANCEL, _) => Err(Error::BadLength),
                        _ => Err(Error::UnknownRequest),
                    };
                    prop_assert_eq!(result, expected);
                    prop_assert_eq!(protocol::decode_reply(protocol::reply_label(&result)), result.map(|_| ()));
                }
                Op::Fired(now) => {
                    let mut woken = Vec::new();
                    let program = timer.fired(now, |c| woken.push(c));
                    let due: Vec<usize> = (0..CLIENTS)
                        .filter(|&c| model[c].is_some_and(|t| t <= now))
                        .collect();
                    for &c in &due {
                        model[c] = None;
                    }
                    prop_assert_eq!(woken, due);
                    prop_assert_eq!(program, expected_program(&model));
                    // Nothing left is due.
                    if let Program::At(t) = program {
                        prop_assert!(t > now);
                    }
                }
            }
            for (c, at) in model.iter().enumerate() {
                prop_assert_eq!(timer.deadline(c), Ok(*at));
            }
            prop_assert_eq!(timer.program(), expected_program(&model));
        }
    }

    /// Any label, any words: the decoder's answer is the table's. (A fuzz
    /// target would add nothing here: the decoder is a four-arm match on
    /// the label and the word count, with no state and no loop, so these
    /// cases reach every arm, and `make no-panic` proves the panic-freedom.)
    #[test]
    fn decode_matches_the_table(
        label in prop_oneof![0..5u64, any::<u64>()],
        words in prop::collection::vec(any::<u64>(), 0..4),
    ) {
        let expected = match (label, words.as_slice()) {
            (1, [at]) => Ok(Request::Set { at: *at }),
            (2, []) => Ok(Request::Cancel),
            (1 | 2, _) => Err(Error::BadLength),
            _ => Err(Error::UnknownRequest),
        };
        let decoded = protocol::decode(label, &words);
        prop_assert_eq!(decoded, expected);
        if let Ok(request) = decoded {
            let mut msg = [0; protocol::MAX_WORDS];
            let (l, n) = request.encode(&mut msg);
            prop_assert_eq!((l, &msg[..n]), (label, words.as_slice()));
        }
    }
}
