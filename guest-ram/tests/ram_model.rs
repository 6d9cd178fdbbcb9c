// SPDX-License-Identifier: BSD-2-Clause
//! Property test: `GuestRam` against a byte-map model.
//!
//! The model keeps, for every byte of a small guest-physical universe, its
//! state (unbacked, backed, free RAM, allocated RAM) and its contents, and
//! implements every operation in the most obvious way. Random operation
//! sequences must give identical results and identical errors, identical
//! extent lists and identical memory.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::ptr::NonNull;

use guest_ram::{Error, GpaRange, GuestRam, MappedRegion, PAGE_SIZE};
use proptest::prelude::*;

const UNIVERSE: u64 = 0x8000;
/// Backing: A and B are contiguous in gpa but not in vaddr; C stands alone.
const REGIONS: [(u64, u64); 3] = [(0x1000, 0x2000), (0x3000, 0x2000), (0x6000, 0x1800)];
const EXTENTS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum S {
    Unbacked,
    Backed,
    Free,
    Alloc,
}

struct Model {
    state: Vec<S>,
    data: Vec<u8>,
}

impl Model {
    fn new() -> Self {
        let mut state = vec![S::Unbacked; UNIVERSE as usize];
        for (gpa, len) in REGIONS {
            state[gpa as usize..(gpa + len) as usize].fill(S::Backed);
        }
        Model {
            state,
            data: vec![0; UNIVERSE as usize],
        }
    }

    /// The range's bytes' states, or the range-shape error.
    fn range(&self, gpa: u64, len: u64) -> Result<Vec<S>, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        let end = gpa.checked_add(len).ok_or(Error::Overflow)?;
        // Bytes past the universe are unbacked: one stands for them all.
        let mut states: Vec<S> = (gpa.min(UNIVERSE)..end.min(UNIVERSE))
            .map(|a| self.state[a as usize])
            .collect();
        if end > UNIVERSE {
            states.push(S::Unbacked);
        }
        Ok(states)
    }

    fn runs(state: &[S]) -> Vec<(u64, u64, bool)> {
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        for (a, s) in state.iter().enumerate() {
            let allocated = match s {
                S::Free => false,
                S::Alloc => true,
                _ => continue,
            };
            match runs.last_mut() {
                Some(r) if r.1 == a as u64 && r.2 == allocated => r.1 += 1,
                _ => runs.push((a as u64, a as u64 + 1, allocated)),
            }
        }
        runs
    }

    /// Paints a range, refusing if the result needs too many extents.
    fn paint(&mut self, gpa: u64, len: u64, s: S) -> Result<(), Error> {
        let mut next = self.state.clone();
        next[gpa as usize..(gpa + len) as usize].fill(s);
        if Self::runs(&next).len() > EXTENTS {
            return Err(Error::CapacityExceeded);
        }
        self.state = next;
        Ok(())
    }

    fn register_at(&mut self, gpa: u64, len: u64) -> Result<(), Error> {
        let r = self.range(gpa, len)?;
        if r.contains(&S::Unbacked) {
            return Err(Error::NotBacked);
        }
        if r.iter().any(|s| *s != S::Backed) {
            return Err(Error::AlreadyRam);
        }
        self.paint(gpa, len, S::Free)
    }

    fn register(&mut self, len: u64) -> Result<u64, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        let gpa = (0..UNIVERSE)
            .find(|&a| {
                a.checked_add(len).is_some_and(|end| {
                    end <= UNIVERSE
                        && self.state[a as usize..end as usize]
                            .iter()
                            .all(|s| *s == S::Backed)
                })
            })
            .ok_or(Error::NoSpace)?;
        self.paint(gpa, len, S::Free).map(|()| gpa)
    }

    fn set_ram(&mut self, gpa: u64, len: u64, from: S, to: S, wrong: Error) -> Result<(), Error> {
        let r = self.range(gpa, len)?;
        if r.iter().any(|s| !matches!(s, S::Free | S::Alloc)) {
            return Err(Error::NotRam);
        }
        if r.iter().any(|s| *s != from) {
            return Err(wrong);
        }
        self.paint(gpa, len, to)
    }

    fn allocate(&mut self, len: u64, align: u64) -> Result<u64, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if !align.is_power_of_two() {
            return Err(Error::BadAlignment);
        }
        let gpa = (0..UNIVERSE)
            .step_by(align.min(UNIVERSE) as usize)
            .find(|&a| {
                a.checked_add(len).is_some_and(|end| {
                    end <= UNIVERSE
                        && self.state[a as usize..end as usize]
                            .iter()
                            .all(|s| *s == S::Free)
                })
            })
            .ok_or(Error::NoSpace)?;
        self.paint(gpa, len, S::Alloc).map(|()| gpa)
    }

    fn largest_free(&self) -> Result<GpaRange, Error> {
        Self::runs(&self.state)
            .into_iter()
            .filter(|r| !r.2)
            .fold(None, |best: Option<(u64, u64, bool)>, r| match best {
                Some(b) if b.1 - b.0 >= r.1 - r.0 => Some(b),
                _ => Some(r),
            })
            .map(|r| GpaRange {
                gpa: r.0,
                len: r.1 - r.0,
            })
            .ok_or(Error::NoSpace)
    }

    fn check_ram(&self, gpa: u64, len: u64) -> Result<(), Error> {
        let r = self.range(gpa, len)?;
        if r.iter().all(|s| matches!(s, S::Free | S::Alloc)) {
            Ok(())
        } else {
            Err(Error::NotRam)
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    RegisterAt(u64, u64),
    Register(u64),
    MarkAllocated(u64, u64),
    Allocate(u64, u64),
    Free(u64, u64),
    LargestFree,
    Read(u64, u64),
    Write(u64, Vec<u8>),
    Fill(u64, u64, u8),
    Touch(u64, u64, Option<usize>),
    TouchSpans(u64, u64),
    Translate(u64, u64),
}

fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..UNIVERSE,
        2 => (0..UNIVERSE / PAGE_SIZE).prop_map(|p| p * PAGE_SIZE),
        1 => (0u64..16).prop_map(|d| u64::MAX - d),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..0x200,
        3 => 0u64..0x3000,
        1 => (0u64..16).prop_map(|d| u64::MAX - d),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (gpa(), len()).prop_map(|(g, l)| Op::RegisterAt(g, l)),
        1 => len().prop_map(Op::Register),
        2 => (gpa(), len()).prop_map(|(g, l)| Op::MarkAllocated(g, l)),
        3 => (len(), prop_oneof![Just(1u64), Just(16), Just(0x1000), 0u64..100]).prop_map(|(l, a)| Op::Allocate(l, a)),
        3 => (gpa(), len()).prop_map(|(g, l)| Op::Free(g, l)),
        1 => Just(Op::LargestFree),
        2 => (gpa(), 0u64..0x2800).prop_map(|(g, l)| Op::Read(g, l)),
        2 => (gpa(), prop::collection::vec(any::<u8>(), 0..0x2800)).prop_map(|(g, d)| Op::Write(g, d)),
        1 => (gpa(), len(), any::<u8>()).prop_map(|(g, l, b)| Op::Fill(g, l, b)),
        2 => (gpa(), len(), prop::option::of(0usize..4)).prop_map(|(g, l, f)| Op::Touch(g, l, f)),
        1 => (gpa(), len()).prop_map(|(g, l)| Op::TouchSpans(g, l)),
        1 => (gpa(), len()).prop_map(|(g, l)| Op::Translate(g, l)),
    ]
}

struct Rig {
    buffers: Vec<Vec<u8>>,
    ram: GuestRam<4, EXTENTS>,
}

impl Rig {
    fn new() -> Self {
        let mut buffers: Vec<Vec<u8>> = REGIONS
            .iter()
            .map(|(_, len)| vec![0u8; *len as usize])
            .collect();
        let regions: Vec<MappedRegion> = REGIONS
            .iter()
            .zip(buffers.iter_mut())
            // SAFETY: the buffers live in the rig beside `ram` and are not
            // touched through references while `ram` is used.
            .map(|((gpa, len), b)| unsafe {
                MappedRegion::new(*gpa, NonNull::new(b.as_mut_ptr()).unwrap(), *len)
            })
            .collect();
        let ram = GuestRam::new(&regions).unwrap();
        Rig { buffers, ram }
    }

    /// Where the model expects `gpa` in the VMM.
    fn vaddr(&mut self, gpa: u64) -> *mut u8 {
        let i = REGIONS
            .iter()
            .position(|(g, l)| gpa >= *g && gpa < g + l)
            .unwrap();
        self.buffers[i]
            .as_mut_ptr()
            .wrapping_add((gpa - REGIONS[i].0) as usize)
    }

    /// Expected per-page (or per-span) chunks of a valid range.
    fn chunks(&mut self, gpa: u64, len: u64, per_page: bool) -> Vec<(u64, *mut u8, usize, usize)> {
        let mut out = Vec::new();
        let mut at = gpa;
        while at < gpa + len {
            let (rg, rl) = *REGIONS
                .iter()
                .find(|(g, l)| at >= *g && at < g + l)
                .unwrap();
            let mut next = (rg + rl).min(gpa + len);
            if per_page {
                next = next.min((at / PAGE_SIZE + 1) * PAGE_SIZE);
            }
            out.push((
                at,
                self.vaddr(at),
                (next - at) as usize,
                (at - gpa) as usize,
            ));
            at = next;
        }
        out
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut rig = Rig::new();
    for op in ops {
        match op {
            Op::RegisterAt(g, l) => {
                prop_assert_eq!(rig.ram.register_at(g, l), model.register_at(g, l))
            }
            Op::Register(l) => prop_assert_eq!(rig.ram.register(l), model.register(l)),
            Op::MarkAllocated(g, l) => prop_assert_eq!(
                rig.ram.mark_allocated(g, l),
                model.set_ram(g, l, S::Free, S::Alloc, Error::AlreadyAllocated)
            ),
            Op::Allocate(l, a) => {
                prop_assert_eq!(rig.ram.allocate_aligned(l, a), model.allocate(l, a))
            }
            Op::Free(g, l) => prop_assert_eq!(
                rig.ram.free(g, l),
                model.set_ram(g, l, S::Alloc, S::Free, Error::NotAllocated)
            ),
            Op::LargestFree => {
                prop_assert_eq!(rig.ram.find_largest_free_region(), model.largest_free())
            }
            Op::Read(g, l) => {
                let mut out = vec![0xa5; l as usize];
                let got = rig.ram.read(g, &mut out);
                prop_assert_eq!(got, model.check_ram(g, l));
                if got.is_ok() {
                    prop_assert_eq!(&out[..], &model.data[g as usize..(g + l) as usize]);
                } else {
                    prop_assert!(out.iter().all(|b| *b == 0xa5));
                }
            }
            Op::Write(g, d) => {
                let want = model.check_ram(g, d.len() as u64);
                prop_assert_eq!(rig.ram.write(g, &d), want);
                if want.is_ok() {
                    model.data[g as usize..g as usize + d.len()].copy_from_slice(&d);
                }
            }
            Op::Fill(g, l, b) => {
                let want = model.check_ram(g, l);
                prop_assert_eq!(rig.ram.fill(g, l, b), want);
                if want.is_ok() {
                    model.data[g as usize..(g + l) as usize].fill(b);
                }
            }
            Op::Touch(g, l, fail_at) => {
                let mut seen = Vec::new();
                let got = rig.ram.touch(g, l, |c| {
                    if Some(seen.len()) == fail_at {
                        return Err(seen.len());
                    }
                    seen.push((c.gpa, c.vaddr, c.len, c.offset));
                    Ok(())
                });
                match model.check_ram(g, l) {
                    Err(e) => {
                        prop_assert_eq!(got, Err(guest_ram::TouchError::Ram(e)));
                        prop_assert!(seen.is_empty());
                    }
                    Ok(()) => {
                        let mut want = rig.chunks(g, l, true);
                        match fail_at {
                            Some(n) if n < want.len() => {
                                prop_assert_eq!(got, Err(guest_ram::TouchError::Callback(n)));
                                want.truncate(n);
                            }
                            _ => prop_assert_eq!(got, Ok(())),
                        }
                        prop_assert_eq!(seen, want);
                    }
                }
            }
            Op::TouchSpans(g, l) => {
                let mut seen = Vec::new();
                let got = rig.ram.touch_spans(g, l, |c| {
                    seen.push((c.gpa, c.vaddr, c.len, c.offset));
                    Ok::<(), ()>(())
                });
                prop_assert_eq!(
                    got.map_err(|e| format!("{e:?}")),
                    model
                        .check_ram(g, l)
                        .map_err(|e| format!("{:?}", guest_ram::TouchError::<()>::Ram(e)))
                );
                if got.is_ok() {
                    prop_assert_eq!(seen, rig.chunks(g, l, false));
                }
            }
            Op::Translate(g, l) => {
                let got = rig.ram.translate(g, l).map(|p| p.as_ptr());
                let want = model.check_ram(g, l).and_then(|()| {
                    // One address if each span starts where the last ended
                    // in the VMM too.
                    let chunks = rig.chunks(g, l, false);
                    let contiguous = chunks
                        .windows(2)
                        .all(|w| w[0].1.wrapping_add(w[0].2) == w[1].1);
                    if contiguous {
                        Ok(chunks[0].1)
                    } else {
                        Err(Error::NotContiguous)
                    }
                });
                prop_assert_eq!(got, want);
            }
        }
        let extents: Vec<(u64, u64, bool)> = rig
            .ram
            .extents()
            .map(|e| (e.range.gpa, e.range.gpa + e.range.len, e.allocated))
            .collect();
        prop_assert_eq!(extents, Model::runs(&model.state));
    }
    for (i, (gpa, len)) in REGIONS.iter().enumerate() {
        prop_assert_eq!(
            &rig.buffers[i][..],
            &model.data[*gpa as usize..(gpa + len) as usize]
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn guest_ram_matches_byte_map_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
