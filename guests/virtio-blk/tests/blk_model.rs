// SPDX-License-Identifier: BSD-2-Clause
//! Property test: random sequences of block requests, honest and not,
//! through the whole path (the guest's driver, the VMM's virtio-mmio
//! frontend, the blk PD's service, the copy server, guest RAM) against a
//! model disk that is a byte array. Statuses, the data read back, and the
//! disk contents must all agree.

mod common;

use proptest::prelude::*;
use virtio::blk::{req, status};
use virtio_blk_guest::{pattern, Blk, Platform};

const DISK: u64 = 1 << 20;

#[derive(Clone, Debug)]
enum Op {
    /// Write `sectors` sectors at `sector`, the data split into two
    /// descriptors at `split` bytes.
    Write {
        sector: u64,
        sectors: u64,
        split: u64,
        seed: u8,
    },
    /// Read them back into a buffer split the same way.
    Read {
        sector: u64,
        sectors: u64,
        split: u64,
    },
    /// A length that is not whole sectors.
    Ragged { sector: u64, len: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let sector = prop_oneof![0u64..2048, 2040u64..2100, Just(u64::MAX / 512)];
    prop_oneof![
        (sector.clone(), 1u64..24, any::<u64>(), any::<u8>()).prop_map(
            |(sector, sectors, split, seed)| Op::Write {
                sector,
                sectors,
                split: split % (sectors * 512),
                seed
            }
        ),
        (sector.clone(), 1u64..24, any::<u64>()).prop_map(|(sector, sectors, split)| Op::Read {
            sector,
            sectors,
            split: split % (sectors * 512)
        }),
        (sector, 1u64..4000)
            .prop_filter("ragged", |(_, l)| l % 512 != 0)
            .prop_map(|(sector, len)| Op::Ragged { sector, len }),
    ]
}

fn fits(sector: u64, len: u64) -> bool {
    sector
        .checked_mul(512)
        .and_then(|o| o.checked_add(len))
        .is_some_and(|end| end <= DISK)
}

/// The data buffers of a request, split at `split` (one buffer if 0).
fn bufs<P: Platform>(
    blk: &Blk<'_, P>,
    n: u64,
    len: u64,
    split: u64,
    writable: bool,
) -> Vec<virtio_blk_guest::Buf> {
    if split == 0 {
        vec![blk.buf(n, 0, len as u32, writable)]
    } else {
        // A gap between the two parts, so the split is real.
        vec![
            blk.buf(n, 0, split as u32, writable),
            blk.buf(n, split + 64, (len - split) as u32, writable),
        ]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn requests_agree_with_a_byte_array(
        ops in proptest::collection::vec(op(), 1..24),
        one_copy in any::<bool>(),
    ) {
        // Both data paths: the disk in the blk PD's shared buffer (one
        // copy), or a disk of its own behind a staging buffer (two).
        let path = if one_copy { common::Path::OneCopy(4096) } else { common::Path::TwoCopies(4096) };
        let (result, printed, _) = common::with_host(path, |host, setup| {
            let mut model = vec![0u8; DISK as usize];
            let mut blk = Blk::new(host, setup.dma);
            if !blk.init() {
                return Err("init failed".to_string());
            }
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Write { sector, sectors, split, seed } => {
                        let len = sectors * 512;
                        let parts = bufs(&blk, 0, len, split, false);
                        let mut data = Vec::with_capacity(len as usize);
                        for p in &parts {
                            let bytes: Vec<u8> = (0..u64::from(p.len)).map(|k| pattern(seed, data.len() as u64 + k)).collect();
                            blk.platform().write(p.gpa, &bytes);
                            data.extend(bytes);
                        }
                        let want = if fits(sector, len) { status::OK } else { status::IOERR };
                        let got = blk.request(req::OUT, sector, &parts);
                        if got != want {
                            return Err(format!("op {i} {op:?}: status {got}, want {want}"));
                        }
                        if want == status::OK {
                            let at = (sector * 512) as usize;
                            model[at..at + len as usize].copy_from_slice(&data);
                        }
                    }
                    Op::Read { sector, sectors, split } => {
                        let len = sectors * 512;
                        let parts = bufs(&blk, 1, len, split, true);
                        let want = if fits(sector, len) { status::OK } else { status::IOERR };
                        let got = blk.request(req::IN, sector, &parts);
                        if got != want {
                            return Err(format!("op {i} {op:?}: status {got}, want {want}"));
                        }
                        if want == status::OK {
                            let mut data = Vec::new();
                            for p in &parts {
                                let mut bytes = vec![0u8; p.len as usize];
                                blk.platform().read(p.gpa, &mut bytes);
                                data.extend(bytes);
                            }
                            let at = (sector * 512) as usize;
                            if data[..] != model[at..at + len as usize] {
                                return Err(format!("op {i} {op:?}: data differs from the model"));
                            }
                        }
                    }
                    Op::Ragged { sector, len } => {
                        let b = blk.buf(1, 0, len as u32, true);
                        let got = blk.request(req::IN, sector, &[b]);
                        if got != status::IOERR {
                            return Err(format!("op {i} {op:?}: status {got}, want IOERR"));
                        }
                    }
                }
            }
            // The whole disk, read back in 64 KiB pieces, is the model.
            for piece in 0..16u64 {
                let b = blk.buf(1, 0, 64 << 10, true);
                if blk.request(req::IN, piece * 128, &[b]) != status::OK {
                    return Err("final read failed".into());
                }
                let mut data = vec![0u8; 64 << 10];
                blk.platform().read(b.gpa, &mut data);
                let at = (piece << 16) as usize;
                if data[..] != model[at..at + (64 << 10)] {
                    return Err(format!("disk differs from the model in piece {piece}"));
                }
            }
            Ok(())
        });
        prop_assert!(result.is_ok(), "{:?}\n{printed:#?}", result);
    }
}
