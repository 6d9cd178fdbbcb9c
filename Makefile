# SPDX-License-Identifier: BSD-2-Clause
# guest-ram: host tests, benchmarks, and the Microkit system image.
#
#   make test                                  host checks (no SDK needed)
#   make MICROKIT_SDK=/path/to/sdk             build the image for MICROKIT_BOARD
#   make MICROKIT_SDK=/path/to/sdk qemu-test   boot it in QEMU, check the self-test
#   make MICROKIT_SDK=/path/to/sdk pds-clippy  the PDs' lints (nightly clippy)
#   make MICROKIT_SDK=/path/to/sdk GUEST=linux crash-test   QEMU killed mid-fsync, the disk checked
#
# Variables (all may be overridden):
#   MICROKIT_SDK     Microkit SDK directory (image targets only)
#   MICROKIT_BOARD   a board with a file in board-configs/ (default qemu_virt_aarch64)
#   MICROKIT_CONFIG  debug | release | benchmark (default debug)
#   BUILD_DIR        where the image goes (default build/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG),
#                    with -linux appended for GUEST=linux)
#   CARGO, RUSTC     the cargo and rustc to use; SEL4_RUSTC, the rustc for
#                    seL4 targets, must have the Rust library source (it
#                    defaults to the first of $(RUSTC), rustc, /usr/bin/rustc
#                    that has it); RUSTFLAGS is passed through
#   LD_LLD           the linker for PDs (default: first of ld.lld, ld.lld-22, rust-lld)
#   QEMU_TIMEOUT     seconds qemu-test waits for the test lines (default 120)
#   GUEST            the VM's guest (VM boards): baremetal (default: the
#                    virtio-blk program in guests/virtio-blk) or linux
#   GUEST_IMAGE      raw AArch64 image the VMM loads at the start of guest RAM
#                    (GUEST=baremetal; default: the guest in guests/virtio-blk)
#   LINUX_IMAGE, INITRD, DISK_IMAGE
#                    GUEST=linux: a raw arm64 kernel Image, a gzip'd cpio
#                    initrd and the blk PD's disk image (defaults: built from
#                    Debian's arm64 packages by guests/linux/make-inputs.sh
#                    into build/linux-inputs); DISK_IMAGE also for the
#                    bare-metal guest (default: 1 MiB of zeros)
#   BLK              GUEST=linux on qemu_virt_aarch64: device (default: QEMU's
#                    virtio-blk device on $(BUILD_DIR)/disk.img through the
#                    blk-driver PD) or ram (the RAM disk); BLK_CACHE is
#                    QEMU's cache mode for the disk file (default writeback)
#   BLK_COPIES       1 (default): the blk PD's disk region is its copy
#                    buffer, the VMM copies guest RAM <-> disk; 2: a 64 KiB
#                    staging buffer, disk <-> buffer <-> guest RAM
#   MEMCPY           builtins (default): the PDs copy with compiler-builtins'
#                    memcpy/memmove; wide: with pd-memcpy's (AArch64: 64
#                    bytes a turn through ldp/stp pairs, no FP/SIMD)
#   LINUX_LOAD       GUEST=linux: how the kernel and initrd (one boot bundle,
#                    $(BUILD_DIR)/linux-bundle.bin) get into memory: qemu
#                    (default where the board file gives LINUX_BUNDLE_PADDR:
#                    QEMU's loader puts the bundle there, outside seL4's RAM,
#                    before seL4 starts) or prefill (the system image
#                    carries it; seL4's initialiser fills it in at boot)
#   GUEST_RAM_PADDR  GUEST=linux: VM n's guest RAM at this physical address
#                    + n * 128 MiB, outside seL4's RAM, so that seL4 does not
#                    zero it at boot (default: the board file's
#                    LINUX_GUEST_RAM_PADDR); empty: RAM Microkit allocates
#   LINUX_DTS, LINUX_DTB
#                    GUEST=linux: the device tree source (board file's
#                    default), or a compiled blob to use instead; the VMM
#                    patches /memory and the /chosen initrd range in place
#   LINUX_BOOTARGS   GUEST=linux: the kernel command line (`make run` adds
#                    LINUX_SHELL=1: /init starts a shell after its suite)
#   VMS              GUEST=linux: how many Linux VMs (1, the default: the
#                    one-VM system of system.xml, its UART passed through;
#                    2 to 4: the system guest_ram_sdf.linux generates, each
#                    VM with its own VMM, RAM, disk and virtio console, the
#                    consoles multiplexed onto the UART by the serial PD)
#   NET_DENY         GUEST=linux VMS=N: pairs of VMs the net PD's switch
#                    keeps apart (`0-2,1-3`; default: none)
#   NET_MIB          GUEST=linux VMS=N: MiB each VM sends the next over TCP
#                    in qemu-test and bench-net (default 64)
#   NET_MTU          GUEST=linux VMS=N: the VM network's MTU, which every
#                    virtio-net device reports and the net PD's switch
#                    forwards (68 to 65535; default 65510: a frame with its
#                    headers is 64 KiB; 1500 gives Ethernet's frame limit)
#   BENCH_PLAIN_MTU  bench-net: give plain QEMU's virtio-net this MTU too
#                    (host_mtu=; default: none, QEMU's 1500)
#   BENCH_HOST_CPUS  bench-net: pin every QEMU to these host CPUs (taskset -c;
#                    e.g. 0: both sides get one host CPU; default unpinned)
#   OBJCOPY          for the guest's raw image (default: first of llvm-objcopy,
#                    llvm-objcopy-22, aarch64-linux-gnu-objcopy)

MICROKIT_BOARD ?= qemu_virt_aarch64
GUEST ?= baremetal
MICROKIT_CONFIG ?= debug
VMS ?= 1
# GUEST=linux VMS=N: pairs of VMs that may not exchange frames (`0-2,1-3`).
NET_DENY ?=
# GUEST=linux VMS=N: MiB each VM sends the next over TCP in qemu-test.
NET_MIB ?= 64
# GUEST=linux VMS=N: the VM network's MTU (pds/common's NET_MTU).
NET_MTU ?= 65510
comma := ,
BUILD_DIR ?= build/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)$(if $(filter linux,$(GUEST)),-linux$(if $(filter-out 1,$(VMS)),-vms$(VMS)))
CARGO ?= cargo
QEMU_TIMEOUT ?= 120

# --- toolchain discovery -------------------------------------------------

# A rustc whose sysroot carries the library source that -Z build-std needs
# (rustup's rust-src component, or Debian's rustc-web + rust-web-src).
has_src = $(shell d=$$($(1) --print sysroot 2>/dev/null) && test -f "$$d/lib/rustlib/src/rust/library/core/Cargo.toml" && echo $(1))
SEL4_RUSTC ?= $(firstword $(foreach r,$(RUSTC) rustc /usr/bin/rustc,$(call has_src,$(r))))
LD_LLD ?= $(firstword $(foreach l,ld.lld ld.lld-22 rust-lld,$(shell command -v $(l) 2>/dev/null)))
OBJCOPY ?= $(firstword $(foreach o,llvm-objcopy llvm-objcopy-22 aarch64-linux-gnu-objcopy,$(shell command -v $(o) 2>/dev/null)))

# A bare-metal build with the library source: the guest and the no-panic
# check (the PDs add alloc and their own flags).
BARE_METAL_CARGO = RUSTC=$(SEL4_RUSTC) RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=$(LD_LLD)" \
    $(CARGO) build -q -Z build-std=core -Z build-std-features=compiler-builtins-mem
GUEST_BUILD = $(BARE_METAL_CARGO) --release -p virtio-blk-guest --features bare-metal --target $(GUEST_TARGET)
NO_PANIC_BUILD = $(BARE_METAL_CARGO) --profile nopanic -p no-panic-check --target aarch64-unknown-none \
    --target-dir target/nopanic --features

# The no_std targets the library must build for.
CROSS_TARGETS := aarch64-unknown-none riscv64gc-unknown-none-elf x86_64-unknown-none
GUEST_TARGET := aarch64-unknown-none-softfloat

.PHONY: crash-test crash-test-run blk-disk-fresh
.PHONY: all test fmt-check clippy host-test doc cross-check no-panic miri sdf-test system bench bench-instructions bench-qemu bench-qemu-run bench-blk bench-blk-run bench-linux bench-net bench-net-run boot-time pds-clippy fuzz \
        image run qemu-test clean help check-sdk check-board check-toolchain linux-inputs

all: image

help:
	@sed -n '1,/^$$/p' Makefile

# --- host side: what CI runs ---------------------------------------------

test: fmt-check clippy host-test doc cross-check no-panic miri sdf-test
	@echo "make test: all checks passed"

fmt-check:
	$(CARGO) fmt --all -- --check
	# pds/ is checked file by file: its workspace needs the SDK-side git dependency.
	rustfmt --check --edition 2021 $(wildcard pds/*/src/*.rs)

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

host-test:
	$(CARGO) test --workspace

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

cross-check:
ifeq ($(SEL4_RUSTC),)
	@echo "cross-check: SKIPPED: no rustc with the Rust library source (rust-src);"
	@echo "  install rustup's rust-src, or Debian's rustc-web and rust-web-src, or set SEL4_RUSTC"
else
	@for t in $(CROSS_TARGETS); do \
	    echo "cross-check: guest-ram, virtio, blk-queue, vcpu-fault, vgic, linux-boot, serial-mux, timer-mux, net-switch, pd-memcpy (exported) for $$t (no_std, $(SEL4_RUSTC))"; \
	    RUSTC=$(SEL4_RUSTC) RUSTC_BOOTSTRAP=1 $(CARGO) build -q -p guest-ram -p virtio -p blk-queue -p vcpu-fault -p vgic -p linux-boot \
	        -p serial-mux -p timer-mux -p net-switch \
	        -p pd-memcpy --features pd-memcpy/export \
	        --release --target $$t -Z build-std=core --target-dir target/cross || exit 1; \
	done
ifeq ($(LD_LLD),)
	@echo "cross-check: guest program SKIPPED: no ld.lld (install lld, or set LD_LLD)"
else
	@echo "cross-check: the virtio-blk guest for $(GUEST_TARGET) (links at 0x40000000)"
	@$(GUEST_BUILD) --target-dir target/cross
endif
endif

# The sdfgen helper (guest-ram-sdf/): its demo system must describe the same
# system as system.xml on every board. sdfgen and pytest come from PyPI into
# a venv under target/.
SDF_VENV := target/sdf-venv
$(SDF_VENV)/bin/pytest:
	python3 -m venv $(SDF_VENV) && $(SDF_VENV)/bin/pip install -q "sdfgen>=0.35" pytest
sdf-test:
	@if ! command -v python3 >/dev/null; then echo "sdf-test: SKIPPED (no python3)"; else \
	    $(MAKE) --no-print-directory $(SDF_VENV)/bin/pytest && \
	    cd guest-ram-sdf && PYTHONPATH=. ../$(SDF_VENV)/bin/python -m pytest -q -p no:cacheprovider tests; \
	fi

# "Never panics", proven by the linker: no-panic-check calls everything a
# client or a guest drives, optimised with panic = "abort", and its panic
# handler references an undefined symbol. If any panic path survives the
# optimiser, the link fails naming guest_ram_panic_is_reachable.
no-panic:
ifeq ($(and $(SEL4_RUSTC),$(LD_LLD)),)
	@echo "no-panic: SKIPPED: needs a rustc with the library source and ld.lld (see cross-check)"
else
	@echo "no-panic: linking no-panic-check for aarch64-unknown-none (panic handler undefined)"
	@$(NO_PANIC_BUILD) bare-metal && echo "no-panic: linked: no panic is reachable"
	@echo "no-panic: the canary (one reachable panic) must fail to link"
	@if $(NO_PANIC_BUILD) bare-metal,canary 2>&1 \
	    | grep -q 'undefined symbol: guest_ram_panic_is_reachable'; \
	then echo "no-panic: canary failed to link, as it must"; \
	else echo "no-panic: the canary linked: the check proves nothing"; exit 1; fi
endif

# Miri checks for undefined behaviour (the raw-pointer copies, the one
# shared-buffer slice) where the nightly miri component is installed: the
# unit tests, the system and self-test tests, and the corpus replays (a
# sample under Miri, which is thousands of times slower). The proptests and
# the 16 MiB guest tests are left out for time.
MIRI := $(CARGO) +nightly miri
MIRIFLAGS ?= -Zmiri-disable-isolation
miri:
	@if ! $(MIRI) --version >/dev/null 2>&1; then \
	    echo "miri: SKIPPED (no nightly toolchain with the miri component: rustup +nightly component add miri rust-src)"; \
	else \
	    export MIRIFLAGS="$(MIRIFLAGS)"; \
	    $(MIRI) test -q -p guest-ram --lib --test system --test selftest --test fuzz_corpus && \
	    $(MIRI) test -q -p virtio --lib --test fuzz_corpus --test queue_model && \
	    $(MIRI) test -q -p blk-queue --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p vcpu-fault --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p vgic --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p linux-boot --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p serial-mux --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p timer-mux --lib && \
	    $(MIRI) test -q -p net-switch --lib --test fuzz_corpus && \
	    $(MIRI) test -q -p pd-memcpy --lib && \
	    echo "miri: no undefined behaviour found"; \
	fi

bench:
	$(CARGO) bench -p guest-ram -- $(BENCH_ARGS)

# Instruction counts that do not depend on machine noise (valgrind's
# callgrind, from Debian): each op run N and 2N times, the difference / N.
INSTR_N ?= 2000
bench-instructions:
	@command -v valgrind >/dev/null || { echo "bench-instructions: needs valgrind (apt-get install valgrind)"; exit 1; }
	@$(CARGO) build -q --release -p guest-ram --example instructions
	@bin=target/release/examples/instructions; \
	count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null $$bin $$1 $$2 2>&1 | sed -n 's/.*Collected : //p'; }; \
	printf '%-26s %14s\n' operation "instructions"; \
	for op in $$($$bin list); do \
	    a=$$(count $$op $(INSTR_N)); b=$$(count $$op $$(( 2 * $(INSTR_N) ))); \
	    printf '%-26s %14s\n' $$op $$(( (b - a) / $(INSTR_N) )); \
	done

# Long fuzz runs (need cargo-fuzz and a nightly toolchain), one target after
# another: FUZZ_SECONDS=600 make fuzz. Each target's corpus is replayed by
# `make test`.
BENCH_ARGS ?=
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := guest-ram:server virtio:mmio virtio:blk virtio:console virtio:net blk-queue:queue vcpu-fault:esr vgic:vgic linux-boot:boot serial-mux:mux net-switch:switch
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	    dir=$${t%%:*}; target=$${t#*:}; echo "fuzz: $$dir $$target ($(FUZZ_SECONDS) s)"; \
	    (cd $$dir && $(CARGO) +nightly fuzz run $$target fuzz/corpus/$$target -- \
	        -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

# --- the Microkit system -------------------------------------------------

BOARD_FILE := board-configs/$(MICROKIT_BOARD).mk
ifneq ($(wildcard $(BOARD_FILE)),)
include $(BOARD_FILE)
else ifneq ($(filter all image run qemu-test system,$(or $(MAKECMDGOALS),all)),)
$(error unknown board '$(MICROKIT_BOARD)': no $(BOARD_FILE); known boards: $(patsubst board-configs/%.mk,%,$(wildcard board-configs/*.mk)))
endif

# The PDs build for rustc's built-in bare-metal target of the board's ARCH.
ifeq ($(ARCH),aarch64)
RUST_TARGET := aarch64-unknown-none
else ifeq ($(ARCH),riscv64)
RUST_TARGET := riscv64gc-unknown-none-elf
else ifeq ($(ARCH),x86_64)
RUST_TARGET := x86_64-unknown-none
# That target defaults to PIE; Microkit PDs are linked static.
ARCH_RUSTFLAGS := -C relocation-model=static
endif

# The Linux guest (GUEST=linux): 128 MiB of guest RAM in 2 MiB pages (the
# CapDL initialiser runs out of slots with 128 MiB of 4 KiB pages mapped
# twice), the kernel, initrd, device tree and disk image as prefilled
# regions, no demo clients.
ifeq ($(GUEST),linux)
ifeq ($(filter yes,$(VM)),)
$(error GUEST=linux needs a board with a VM (VM := yes in its board file))
endif
ifeq ($(LINUX_DTS)$(LINUX_DTB),)
$(error GUEST=linux: $(MICROKIT_BOARD) has no Linux device tree (set LINUX_DTS in $(BOARD_FILE), or pass LINUX_DTS= or LINUX_DTB=))
endif
GUEST_RAM_SIZE := 0x8000000
GUEST_RAM_PAGE_SIZE := 0x200000
# 10 minutes, and 4 s per MiB of the network test's transfer with VMS > 1.
QEMU_TIMEOUT := $(if $(filter command line,$(origin QEMU_TIMEOUT)),$(QEMU_TIMEOUT),$(shell echo $$((600 + $(if $(filter-out 1,$(VMS)),4 * $(NET_MIB),0)))))
LINUX_INPUTS := build/linux-inputs
LINUX_IMAGE ?= $(LINUX_INPUTS)/Image
INITRD ?= $(LINUX_INPUTS)/initrd.cpio.gz
DISK_IMAGE ?= $(LINUX_INPUTS)/disk.img
LINUX_DTB_BUILT := $(BUILD_DIR)/linux.dtb
LINUX_DTB ?= $(LINUX_DTB_BUILT)
# The kernel and initrd in one boot bundle (guest_ram_sdf.bundle).
LINUX_BUNDLE := $(BUILD_DIR)/linux-bundle.bin
LINUX_LOAD ?= $(if $(LINUX_BUNDLE_PADDR),qemu,prefill)
ifeq ($(LINUX_LOAD),qemu)
ifeq ($(LINUX_BUNDLE_PADDR),)
$(error LINUX_LOAD=qemu: $(MICROKIT_BOARD)'s board file gives no LINUX_BUNDLE_PADDR)
endif
# QEMU gets LINUX_BUNDLE_RAM more RAM than seL4 knows of: the bundle is
# loaded there, into memory seL4 hands out as device untyped (never
# zeroed), which the VMM maps read-only.
QEMU_RAM := $(LINUX_BUNDLE_RAM)
QEMU_CMD += -device loader,file=$(LINUX_BUNDLE),addr=$(LINUX_BUNDLE_PADDR),force-raw=on
LINUX_IMAGES_ATTRS = size='$$(printf '0x%x' $$(( ($$(stat -c %s $(LINUX_BUNDLE)) + 0x1fffff) / 0x200000 * 0x200000 )))' phys_addr='$(LINUX_BUNDLE_PADDR)'
LINUX_BUNDLE_SDF = --bundle-paddr $(LINUX_BUNDLE_PADDR)
else ifeq ($(LINUX_LOAD),prefill)
LINUX_IMAGES_ATTRS = prefill_path='$(abspath $(LINUX_BUNDLE))'
LINUX_BUNDLE_SDF =
else
$(error LINUX_LOAD must be qemu or prefill, not '$(LINUX_LOAD)')
endif
# Guest RAM where the board file's LINUX_GUEST_RAM_PADDR says (VM n's at
# GUEST_RAM_PADDR + n * GUEST_RAM_SIZE): QEMU's RAM above what seL4 is
# built for, which seL4 hands out as device untyped and neither zeroes nor
# cleans at boot (QEMU's RAM starts zeroed). RAM that Microkit allocates
# is zeroed by seL4, which took the CapDL initialiser about 0.95 s for 128
# MiB under QEMU. GUEST_RAM_PADDR= (empty) gives that instead.
GUEST_RAM_PADDR ?= $(LINUX_GUEST_RAM_PADDR)
ifneq ($(GUEST_RAM_PADDR),)
QEMU_RAM := $(shell echo $$(( ($(GUEST_RAM_PADDR) + $(VMS) * $(GUEST_RAM_SIZE) - $(QEMU_RAM_BASE)) >> 20 )))M
endif
ifeq ($(VMS),1)
LINUX_BOOTARGS ?= console=ttyAMA0 earlycon=pl011,0x9000000
# The one-VM system: the PL011 passed through (the DTS's UART parts).
LINUX_DTS_SED := -e '/CONSOLE: begin/,/CONSOLE: end/d'
else ifneq ($(filter 2 3 4,$(VMS)),)
# N VMs: each its own device tree (its VM id on the command line, for
# /init), the console a virtio console (hvc0; the DTS's CONSOLE parts).
MULTI_VM := yes
LINUX_BOOTARGS ?= console=hvc0
LINUX_DTS_SED := -e '/UART: begin/,/UART: end/d'
LINUX_VM_DTBS := $(foreach n,$(shell seq 0 $$(($(VMS) - 1))),$(BUILD_DIR)/linux-vm$(n).dtb)
# On an SMP kernel (smp-* configs: QEMU gets 4 cores) each VM and its PDs
# get a core of their own.
CPUS := $(if $(filter smp-%,$(MICROKIT_CONFIG)),4,1)
else
$(error VMS must be 1 to 4, not '$(VMS)')
endif
BLK_PAGE_SIZE := 0x200000
else ifeq ($(GUEST),baremetal)
DISK_IMAGE ?= $(BUILD_DIR)/blk-disk.img
BLK_PAGE_SIZE := 0x1000
else
$(error GUEST must be baremetal or linux, not '$(GUEST)')
endif

# The blk PD's data path (system.xml's ONECOPY and TWOCOPY parts).
BLK_COPIES ?= 1
ifeq ($(BLK_COPIES),1)
BLK_SED = -e '/TWOCOPY: begin/,/TWOCOPY: end/d'
else ifeq ($(BLK_COPIES),2)
BLK_SED = -e '/ONECOPY: begin/,/ONECOPY: end/d'
else
$(error BLK_COPIES must be 1 or 2, not '$(BLK_COPIES)')
endif

# BLK-DEVICE: begin
# The blk PD's disk (system.xml's BLKRAM and BLKDEVICE parts). BLK=device,
# the default for GUEST=linux on qemu_virt_aarch64: QEMU's virtio-blk
# device on the disk file $(BUILD_DIR)/disk.img (made from DISK_IMAGE by
# qemu-test and crash-test, and by run if it is missing), driven by the
# blk-driver PD; the image no longer carries the disk. BLK=ram: the RAM
# disk, prefilled with DISK_IMAGE. BLK_CACHE is QEMU's cache mode for the
# file (writeback: a completed write is in the file, since QEMU writes a
# raw file with pwrite, and a flush is an fdatasync).
# The N-VM system (VMS > 1): a device, a disk file and a driver PD per VM:
# VM n's disk is $(BUILD_DIR)/disk-vm<n>.img on QEMU virt's virtio-mmio
# transport 8n (0x0a000000 + n * 0x1000, SPI 16 + 8n: a page and an
# interrupt of its own for each driver PD); the generator's --blk device.
BLK ?= $(if $(and $(filter linux,$(GUEST)),$(filter qemu_virt_aarch64,$(MICROKIT_BOARD))),device,ram)
BLK_DATA_SIZE := 0x800000
BLK_DISK_FILE = $(BUILD_DIR)/disk.img
VM_INDICES = $(shell seq 0 $$(($(VMS) - 1)))
BLK_DISK_FILES = $(if $(MULTI_VM),$(foreach n,$(VM_INDICES),$(BUILD_DIR)/disk-vm$(n).img),$(BLK_DISK_FILE))
BLK_CACHE ?= writeback
ifeq ($(BLK),device)
ifneq ($(GUEST)-$(MICROKIT_BOARD)-$(BLK_COPIES),linux-qemu_virt_aarch64-1)
$(error BLK=device needs GUEST=linux on qemu_virt_aarch64 with BLK_COPIES=1)
endif
BLK_SED += -e '/BLKRAM: begin/,/BLKRAM: end/d' -e 's/@BLK_DATA_SIZE@/$(BLK_DATA_SIZE)/g'
BLK_PDS := blk-driver
BLK_FEATURES := --features blk/device
BLK_REGION_BYTES = $$(($(BLK_DATA_SIZE)))
ifeq ($(MULTI_VM),yes)
QEMU_CMD += -global virtio-mmio.force-legacy=false \
    $(foreach n,$(VM_INDICES),-drive file=$(BUILD_DIR)/disk-vm$(n).img,format=raw,if=none,id=blkdisk$(n),cache=$(BLK_CACHE) \
        -device virtio-blk-device,drive=blkdisk$(n),bus=virtio-mmio-bus.$(shell echo $$((8 * $(n)))))
else
QEMU_CMD += -global virtio-mmio.force-legacy=false \
    -drive file=$(BLK_DISK_FILE),format=raw,if=none,id=blkdisk,cache=$(BLK_CACHE) \
    -device virtio-blk-device,drive=blkdisk,bus=virtio-mmio-bus.0
endif
else ifeq ($(BLK),ram)
BLK_SED += -e '/BLKDEVICE: begin/,/BLKDEVICE: end/d'
BLK_REGION_BYTES = $(if $(filter yes,$(VM)),$$(stat -c %s $(DISK_IMAGE)),0)
else
$(error BLK must be device or ram, not '$(BLK)')
endif
# BLK-DEVICE: end

SDK_BOARD_DIR := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
IMAGE_FILE := $(BUILD_DIR)/loader.img
REPORT_FILE := $(BUILD_DIR)/report.txt
SYSTEM_FILE := $(BUILD_DIR)/guest-ram.system
PDS := vmm $(if $(filter linux,$(GUEST)),,selftest guest-view) $(if $(filter yes,$(VM)),blk doorbell $(BLK_PDS)) $(if $(filter yes,$(BENCH)),bench) \
    $(if $(MULTI_VM),serial net timer)
PD_ELFS := $(addprefix $(BUILD_DIR)/,$(addsuffix .elf,$(PDS)))
# The C client PD: C, built like Microkit's own examples (the SDK's
# libmicrokit and microkit.ld, a C cross compiler from Debian, ld.lld).
ifeq ($(ARCH),aarch64)
C_CC ?= aarch64-linux-gnu-gcc
C_ARCH_FLAGS := -mstrict-align
else ifeq ($(ARCH),riscv64)
C_CC ?= riscv64-linux-gnu-gcc
C_ARCH_FLAGS := -march=rv64imafdc_zicsr_zifencei -mabi=lp64d -mcmodel=medany
else ifeq ($(ARCH),x86_64)
C_CC ?= x86_64-linux-gnu-gcc
C_ARCH_FLAGS := -march=x86-64 -mtune=generic
endif
# Debian's cross compilers build PIE by default, which the Microkit loader
# does not take; and the PD has no C library (stack protector included).
C_CFLAGS := -nostdlib -ffreestanding -fno-pie -fno-stack-protector -g -O2 -Wall -Wno-unused-function -Werror \
    -I$(SDK_BOARD_DIR)/include -Iinclude -Ic-client $(C_ARCH_FLAGS) \
    -DGUEST_RAM_GPA=$(GUEST_RAM_GPA)ull -DGUEST_RAM_SIZE=$(GUEST_RAM_SIZE)ull
C_CLIENT_ELF := $(BUILD_DIR)/c-client.elf

$(C_CLIENT_ELF): c-client/pd.c c-client/selftest.c c-client/selftest.h include/guest_ram_client.h \
        $(BOARD_FILE) | check-sdk check-toolchain $(BUILD_DIR)
	@command -v $(C_CC) >/dev/null || { echo "error: no C compiler $(C_CC) for the C client PD (Debian: gcc-$(ARCH)-linux-gnu, or set C_CC)"; exit 1; }
	$(C_CC) $(C_CFLAGS) -c c-client/pd.c -o $(BUILD_DIR)/c-client-pd.o
	$(C_CC) $(C_CFLAGS) -c c-client/selftest.c -o $(BUILD_DIR)/c-client-selftest.o
	$(LD_LLD) -L$(SDK_BOARD_DIR)/lib $(BUILD_DIR)/c-client-pd.o $(BUILD_DIR)/c-client-selftest.o \
	    -lmicrokit -Tmicrokit.ld -o $@

MEMCPY ?= builtins
ifeq ($(filter $(MEMCPY),builtins wide),)
$(error MEMCPY must be builtins or wide, not '$(MEMCPY)')
endif

PD_FEATURES := $(if $(filter yes,$(VM)),--features vmm/vm) $(if $(filter linux,$(GUEST)),--features vmm/linux) \
    $(if $(filter 2,$(BLK_COPIES)),--features blk/two-copy) \
    $(if $(filter yes,$(BENCH)),--features vmm/bench) \
    $(if $(filter wide,$(MEMCPY)),--features common/wide-memcpy) $(BLK_FEATURES)

# The guest (VM boards): bare-metal AArch64 at EL1, soft-float (its MMU
# and FP are off), linked at the start of guest RAM, loaded as a raw image.
GUEST_BIN := $(BUILD_DIR)/virtio-blk-guest.bin
GUEST_IMAGE ?= $(GUEST_BIN)

check-sdk:
ifeq ($(strip $(MICROKIT_SDK)),)
	$(error MICROKIT_SDK is not set: point it at a Microkit SDK (releases at https://github.com/seL4/microkit/releases, or build one from source with its build_sdk.py))
endif
	@test -x $(MICROKIT_SDK)/bin/microkit || { echo "error: $(MICROKIT_SDK)/bin/microkit not found: MICROKIT_SDK is not a Microkit SDK"; exit 1; }
	@test -d $(SDK_BOARD_DIR) || { echo "error: the SDK has no $(MICROKIT_BOARD)/$(MICROKIT_CONFIG) (it has: $$(ls $(MICROKIT_SDK)/board | tr '\n' ' '))"; exit 1; }

check-board:
	@test -f $(BOARD_FILE) || { echo "error: unknown board '$(MICROKIT_BOARD)': no $(BOARD_FILE) (known: $$(ls board-configs | sed 's/\.mk$$//' | tr '\n' ' '))"; exit 1; }

check-toolchain:
	@test -n "$(SEL4_RUSTC)" || { echo "error: no rustc with the Rust library source for -Z build-std: install rustup's rust-src, or Debian's rustc-web and rust-web-src, or set SEL4_RUSTC"; exit 1; }
	@test -n "$(LD_LLD)" || { echo "error: no linker for the PDs: install lld (ld.lld) or set LD_LLD"; exit 1; }

$(BUILD_DIR):
	mkdir -p $@

# One Cargo invocation builds every PD; the microkit tool finds them by name.
PD_RUSTFLAGS := -C linker=$(LD_LLD) $(ARCH_RUSTFLAGS) $(RUSTFLAGS)

$(PD_ELFS) &: check-sdk check-board check-toolchain $(BUILD_DIR) FORCE
	cd pds && \
	RUSTC=$(SEL4_RUSTC) RUSTC_BOOTSTRAP=1 \
	RUSTFLAGS="$(PD_RUSTFLAGS)" \
	SEL4_INCLUDE_DIRS=$(abspath $(SDK_BOARD_DIR)/include) \
	GUEST_RAM_GPA=$(GUEST_RAM_GPA) GUEST_RAM_SIZE=$(GUEST_RAM_SIZE) NET_MTU=$(NET_MTU) \
	    $(CARGO) build --release $(PD_FEATURES) \
	        -Z build-std=core,alloc,compiler_builtins \
	        -Z build-std-features=compiler-builtins-mem \
	        --target $(RUST_TARGET) \
	        --target-dir $(abspath $(BUILD_DIR))/target
	for pd in $(PDS); do cp $(BUILD_DIR)/target/$(RUST_TARGET)/release/$$pd $(BUILD_DIR)/$$pd.elf; done

# The PDs' lints (pds/Cargo.toml's [workspace.lints], the root's rules),
# with clippy: needs the SDK (sel4-sys's headers) and a nightly toolchain
# with rust-src for -Z build-std. Every feature set the Makefile builds.
pds-clippy: check-sdk check-board
	@for features in vmm/vm,vmm/bench,common/wide-memcpy vmm/vm,blk/two-copy vmm/linux vmm/linux,blk/device; do \
	    echo "pds-clippy: --features $$features"; \
	    (cd pds && RUSTFLAGS="-C linker=$(LD_LLD) $(ARCH_RUSTFLAGS)" \
	        SEL4_INCLUDE_DIRS=$(abspath $(SDK_BOARD_DIR)/include) \
	        GUEST_RAM_GPA=$(GUEST_RAM_GPA) GUEST_RAM_SIZE=$(GUEST_RAM_SIZE) \
	        $(CARGO) +nightly clippy -q --release --features $$features \
	            -Z build-std=core,alloc,compiler_builtins -Z build-std-features=compiler-builtins-mem \
	            --target $(RUST_TARGET) --target-dir $(abspath build/pds-clippy) -- -D warnings) || exit 1; \
	done; echo "pds-clippy: clean"

FORCE:

$(GUEST_BIN): check-toolchain $(BUILD_DIR) FORCE
	@test -n "$(OBJCOPY)" || { echo "error: no objcopy for the guest image: install llvm or binutils-aarch64-linux-gnu, or set OBJCOPY"; exit 1; }
	GUEST_RAM_GPA=$(GUEST_RAM_GPA) $(GUEST_BUILD) --target-dir $(abspath $(BUILD_DIR))/guest-target
	$(OBJCOPY) -O binary $(BUILD_DIR)/guest-target/$(GUEST_TARGET)/release/virtio-blk-guest $@

# The guest's parts of system.xml (see its header).
LINUX_SED = -e "s|@LINUX_IMAGES@|$(LINUX_IMAGES_ATTRS)|g" \
    -e 's|@GUEST_RAM_PLACE@|$(if $(GUEST_RAM_PADDR), phys_addr="$(GUEST_RAM_PADDR)")|' \
    -e 's|@LINUX_DTB@|$(abspath $(LINUX_DTB))|g' \
    -e '/DEMO: begin/,/DEMO: end/d' -e '/BAREMETAL: begin/,/BAREMETAL: end/d' -e 's/@VMM_SMC@/ smc="true"/'
BAREMETAL_SED = -e '/LINUX: begin/,/LINUX: end/d' -e 's/@VMM_SMC@//' -e 's/@GUEST_RAM_PLACE@//'

# system.xml is the one system description; the board file fills in what
# differs per board (guest RAM address, size and page size) and whether it
# gets the VM (boards without VM := yes lose the VM parts).
# The blk PD's disk region is the disk image rounded up to its page size,
# at 0x32000000 in both PDs; with one copy the staging region follows it.
ifeq ($(MULTI_VM),yes)
# N VMs: generated by the sdfgen helper (guest-ram-sdf/guest_ram_sdf/linux.py),
# the one source for 1..4 VMs, whose host test checks N = 1..4.
# The network's ACL: NET_DENY (pairs of VMs, `0-2,1-3`) written to a file
# that the generator prefills into a region the net PD parses.
$(SYSTEM_FILE): guest-ram-sdf/guest_ram_sdf/linux.py $(DISK_IMAGE) $(LINUX_BUNDLE) $(SDF_VENV)/bin/pytest FORCE | $(BUILD_DIR)
	echo '$(NET_DENY)' > $(BUILD_DIR)/net-deny.txt
	cd guest-ram-sdf && ../$(SDF_VENV)/bin/python -m guest_ram_sdf.linux --vms $(VMS) --cpus $(CPUS) \
	    --net-acl $(abspath $(BUILD_DIR)/net-deny.txt) \
	    --guest-ram-size $(GUEST_RAM_SIZE) --bundle $(abspath $(LINUX_BUNDLE)) $(LINUX_BUNDLE_SDF) --blk $(BLK) \
	    $(if $(GUEST_RAM_PADDR),--guest-ram-paddr $(GUEST_RAM_PADDR)) \
	    $(foreach d,$(LINUX_VM_DTBS),--dtb $(abspath $(d))) --disk $(abspath $(DISK_IMAGE)) > $(abspath $@)
else
$(SYSTEM_FILE): system.xml $(BOARD_FILE) $(if $(filter yes,$(VM)),$(DISK_IMAGE)) $(if $(filter linux,$(GUEST)),$(LINUX_BUNDLE)) FORCE | $(BUILD_DIR)
	$(if $(filter yes,$(VM)),@disk=$$(stat -c %s $(DISK_IMAGE)) && \
	    [ $$disk -gt 0 ] && [ $$((disk % 512)) = 0 ] || { echo "error: DISK_IMAGE $(DISK_IMAGE) is empty or not whole 512-byte sectors"; exit 1; })
	disk=$(BLK_REGION_BYTES); page=$$(($(BLK_PAGE_SIZE))); \
	region=$$(( (disk + page - 1) / page * page )); \
	sed -e 's/@GUEST_RAM_GPA@/$(GUEST_RAM_GPA)/g' \
	    -e "s/@BLK_STAGING_VADDR@/$$(printf '0x%x' $$((0x32000000 + region)))/g" -e 's/@BLK_PAGE_SIZE@/$(BLK_PAGE_SIZE)/g' \
	    -e 's|@DISK_IMAGE@|$(abspath $(DISK_IMAGE))|g' $(BLK_SED) \
	    -e 's/@GUEST_RAM_SIZE@/$(GUEST_RAM_SIZE)/g' \
	    -e 's/@GUEST_RAM_PAGE_SIZE@/$(GUEST_RAM_PAGE_SIZE)/g' \
	    -e 's|@GUEST_IMAGE@|$(abspath $(GUEST_IMAGE))|g' \
	    $(if $(filter linux,$(GUEST)),$(LINUX_SED),$(BAREMETAL_SED)) \
	    $(if $(filter yes,$(VM)),,-e '/VM: begin/,/VM: end/d') \
	    $(if $(filter yes,$(BENCH)),,-e '/BENCH: begin/,/BENCH: end/d') $< > $@
endif

image: $(IMAGE_FILE)

# The board's system description alone (no SDK needed): the sdfgen
# helper's tests compare against it.
system: $(SYSTEM_FILE)

# The bare-metal guest's disk: 1 MiB of zeros.
$(BUILD_DIR)/blk-disk.img: | $(BUILD_DIR)
	head -c 1048576 /dev/zero > $@

# The Linux guest's inputs, from Debian's arm64 packages (nothing is
# committed; bring your own with LINUX_IMAGE=, INITRD=, DISK_IMAGE=).
linux-inputs $(LINUX_INPUTS)/Image $(LINUX_INPUTS)/initrd.cpio.gz $(LINUX_INPUTS)/disk.img &: \
        guests/linux/make-inputs.sh guests/linux/init $(wildcard guests/linux/disk/*)
	guests/linux/make-inputs.sh $(or $(LINUX_INPUTS),build/linux-inputs)

# The device tree: the DTS with the command line filled in (`run` gives
# a shell after the suite). The VMM patches memory and initrd in place.
LINUX_BOOTARGS_ALL = $(LINUX_BOOTARGS)$(if $(filter run,$(MAKECMDGOALS)), LINUX_SHELL=1)
# $(1): extra kernel arguments.
define linux_dtb
	@command -v dtc >/dev/null || { echo "error: no dtc for the Linux device tree (Debian: device-tree-compiler), or pass LINUX_DTB="; exit 1; }
	sed $(LINUX_DTS_SED) -e 's|@BOOTARGS@|$(LINUX_BOOTARGS_ALL)$(1)|' \
	    -e "s|@RNG_SEED@|$$(od -An -tx1 -N64 /dev/urandom | tr -s ' \n' ' ')|" \
	    $(LINUX_DTS) | dtc -q -I dts -O dtb -o $@ -
endef
$(LINUX_DTB_BUILT): $(LINUX_DTS) FORCE | $(BUILD_DIR)
	$(call linux_dtb,)
# The N-VM system: VM n's tree tells its /init which VM it is.
$(BUILD_DIR)/linux-vm%.dtb: $(LINUX_DTS) FORCE | $(BUILD_DIR)
	$(call linux_dtb, GUEST_VM=$* GUEST_VMS=$(VMS)$(if $(NET_DENY), GUEST_NET_DENY=$(NET_DENY))$(if $(NET_MIB), GUEST_NET_MIB=$(NET_MIB)) GUEST_NET_MTU=$(NET_MTU))

# The kernel and initrd's boot bundle.
$(LINUX_BUNDLE): $(LINUX_IMAGE) $(INITRD) guest-ram-sdf/guest_ram_sdf/bundle.py $(SDF_VENV)/bin/pytest | $(BUILD_DIR)
	cd guest-ram-sdf && ../$(SDF_VENV)/bin/python -m guest_ram_sdf.bundle --kernel $(abspath $(LINUX_IMAGE)) \
	    --initrd $(abspath $(INITRD)) -o $(abspath $@)
	@if [ "$(LINUX_LOAD)" = qemu ] && [ $$(stat -c %s $@) -gt $$(( $(LINUX_BUNDLE_MAX) )) ]; then \
	    echo "error: $@ is larger than the $(LINUX_BUNDLE_MAX) bytes QEMU loads it into (LINUX_BUNDLE_RAM)"; rm -f $@; exit 1; fi

GUEST_INPUTS := $(if $(filter linux,$(GUEST)),$(LINUX_BUNDLE) $(DISK_IMAGE) $(if $(MULTI_VM),$(LINUX_VM_DTBS),$(LINUX_DTB)),$(GUEST_IMAGE))

$(IMAGE_FILE): $(SYSTEM_FILE) $(PD_ELFS) $(if $(filter linux,$(GUEST)),,$(C_CLIENT_ELF)) $(if $(filter yes,$(VM)),$(GUEST_INPUTS))
	$(MICROKIT_SDK)/bin/microkit $(SYSTEM_FILE) \
	    --search-path $(BUILD_DIR) \
	    --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
	    -o $(IMAGE_FILE) -r $(REPORT_FILE)
	@echo "image: $(IMAGE_FILE) (report: $(REPORT_FILE))"

run: $(IMAGE_FILE)
ifeq ($(strip $(QEMU_CMD)),)
	$(error $(MICROKIT_BOARD) is not a QEMU board: load $(IMAGE_FILE) onto the board as its documentation says)
endif
	$(QEMU_CMD)

# Boots under a timeout and passes only when every test summary the board
# runs says N/N passed: the self-test, the C client's, and on VM boards the
# guest's virtio-blk suite. A failing summary, or the VMM stopping the guest, ends
# the wait at once.
ifeq ($(GUEST),linux)
# The Linux guest's suite, and its power-off through PSCI.
# Two boots (the first ends in a guest reset), then a power-off.
SUMMARY := ^linux: virtio-blk [0-9]+/[0-9]+ passed
PASSED := ^(linux: virtio-blk ([0-9]+)/\2 passed|linux: reset: ok, booted again|INFO: vmm: guest powered off)
SUITES := 4
STOPPED := vmm: (stopping the guest|guest not started)|Kernel panic|end Kernel panic
else
SUMMARY := ^(guest-ram: selftest|guest-ram: c-client|guest: virtio-blk) [0-9]+/[0-9]+ passed
PASSED := ^(guest-ram: selftest|guest-ram: c-client|guest: virtio-blk) ([0-9]+)/\2 passed
SUITES := $(if $(filter yes,$(VM)),3,2)
STOPPED := vmm: (stopping the guest|guest exited with code [1-9]|guest not started)
endif
# BROUGHT-INITRD: begin
# GUEST=linux with INITRD= given: that initrd runs its own suite, so the
# test passes on its summary line (any "N/N passed") and the power-off.
ifeq ($(GUEST),linux)
ifneq ($(filter command line environment,$(origin INITRD)),)
BROUGHT_INITRD := yes
SUMMARY := [0-9]+/[0-9]+ passed
PASSED := ((^|[^0-9])([0-9]+)/\3 passed|^INFO: vmm: guest powered off)
SUITES := 2
endif
endif
# BROUGHT-INITRD: end
ifeq ($(MULTI_VM),yes)
# N VMs: guests/linux/check-vms.sh reads the log every second (pass, fail,
# or not yet), and the run ends on QEMU's own exit: the serial PD powers
# the machine off once every VM is off. QEMU's input is a FIFO: when VM n
# waits for a line, the test types Ctrl-\ n (the serial PD gives VM n the
# keyboard) and `line-for-vm<n>`, which the VM echoes.
# With BLK=device every VM's disk file is fresh, and after the run e2fsck
# -fn must find each one clean, and guests/linux/check-disks.sh must find
# on each what its guest wrote (and nothing another VM wrote).
qemu-test: $(IMAGE_FILE) $(if $(filter device,$(BLK)),blk-disk-fresh)
	@log=$(BUILD_DIR)/qemu.log; rm -f $$log; fifo=$(BUILD_DIR)/qemu.in; rm -f $$fifo; mkfifo $$fifo; \
	exec 3<>$$fifo; $(QEMU_CMD) <&3 > $$log 2>&1 & qemu=$$!; \
	result=1; for i in $$(seq $(QEMU_TIMEOUT)); do \
	    exited=; kill -0 $$qemu 2>/dev/null || exited=yes; \
	    for n in $$(seq 0 $$(($(VMS) - 1))); do \
	        waits=$$(grep -c "^vm$$n| linux: console: waiting for input" $$log); \
	        eval "sent=\$${sent$$n:-0}"; \
	        if [ $$waits -gt $$sent ]; then \
	            printf '\034%d' $$n >&3; sleep 0.2; printf 'line-for-vm%d\r' $$n >&3; eval "sent$$n=$$waits"; \
	        fi; \
	    done; \
	    verdict=$$(guests/linux/check-vms.sh $$log $(VMS) $$exited); status=$$?; \
	    [ $$status = 2 ] || { result=$$status; break; }; \
	    sleep 1; \
	done; kill $$qemu 2>/dev/null; wait $$qemu 2>/dev/null; exec 3>&-; rm -f $$fifo; cat $$log; \
	[ -n "$$verdict" ] && echo "$$verdict"; [ $$i = $(QEMU_TIMEOUT) ] && [ $$result = 1 ] && echo "qemu-test: timed out"; \
	$(if $(filter device,$(BLK)),if [ $$result = 0 ]; then for f in $(BLK_DISK_FILES); do \
	    if e2fsck -fn $$f > $$f.e2fsck 2>&1; then echo "qemu-test: e2fsck -fn $$f: clean"; \
	    else echo "qemu-test: e2fsck -fn $$f: NOT clean (see $$f.e2fsck)"; result=1; fi; done; \
	    guests/linux/check-disks.sh $(BLK_DISK_FILES) || result=1; fi;) \
	if [ $$result = 0 ]; then echo "qemu-test: PASSED"; else echo "qemu-test: FAILED (see $$log)"; fi; exit $$result
else ifneq ($(BLK)-$(BROUGHT_INITRD),device-)
qemu-test: $(IMAGE_FILE)
ifeq ($(strip $(QEMU_CMD)),)
	$(error $(MICROKIT_BOARD) is not a QEMU board)
endif
	@log=$(BUILD_DIR)/qemu.log; rm -f $$log; off=; \
	$(QEMU_CMD) < /dev/null > $$log 2>&1 & qemu=$$!; \
	result=1; for i in $$(seq $(QEMU_TIMEOUT)); do \
	    if [ "$$(grep -cE '$(PASSED)' $$log)" -ge $(SUITES) ]; then result=0; break; fi; \
	    if grep -E '$(SUMMARY)' $$log | grep -qvE '$(PASSED)'; then break; fi; \
	    if grep -qE '$(STOPPED)' $$log || ! kill -0 $$qemu 2>/dev/null; then break; fi; \
	    sleep 1; \
	done; \
	$(if $(filter linux,$(GUEST)),if [ $$result = 0 ]; then \
	    for i in $$(seq 20); do kill -0 $$qemu 2>/dev/null || break; sleep 1; done; \
	    if kill -0 $$qemu 2>/dev/null; then result=1; off="qemu-test: QEMU did not power off"; \
	    else off="qemu-test: QEMU powered off (PSCI SYSTEM_OFF)"; fi; fi;) \
	kill $$qemu 2>/dev/null; wait $$qemu 2>/dev/null; cat $$log; [ -z "$$off" ] || echo "$$off"; \
	if [ $$result = 0 ]; then echo "qemu-test: PASSED"; else echo "qemu-test: FAILED (see $$log)"; fi; exit $$result
endif

# BLK-DEVICE-TESTS: begin
# BLK=device: a disk that keeps its data, checked by guests/linux/disk-test.sh.
# qemu-test: QEMU twice on one fresh disk file (the first run's suite, a
# guest reset, files written with checksums and a power-off; the second
# finds every file), then e2fsck -fn. crash-test: the guest writes and
# fsyncs files until QEMU is SIGKILLed midway; the next QEMU's guest
# replays the journal and lists what is there: every file it reported
# fsynced must be there with its checksum; then e2fsck -fn.
DISK_TEST = guests/linux/disk-test.sh
ifeq ($(BLK)-$(BROUGHT_INITRD)-$(MULTI_VM),device--)
qemu-test: $(IMAGE_FILE)
	@$(DISK_TEST) keep $(DISK_IMAGE) $(BLK_DISK_FILE) $(BUILD_DIR) $(QEMU_TIMEOUT) $(QEMU_CMD)
else ifeq ($(BLK)-$(MULTI_VM),device-)
# A brought initrd runs its own suite, on a fresh disk file.
qemu-test: blk-disk-fresh
endif
ifeq ($(BLK),device)
# Fresh disk files (every VM's with VMS=N).
blk-disk-fresh: | $(BUILD_DIR)
	for f in $(BLK_DISK_FILES); do cp $(DISK_IMAGE) $$f; done

$(BLK_DISK_FILES): | $(BUILD_DIR)
	cp $(DISK_IMAGE) $@
run bench-linux bench-net-run boot-time: | $(BLK_DISK_FILES)
endif
crash-test:
ifneq ($(BLK)-$(MULTI_VM),device-)
	$(error crash-test needs BLK=device and one VM (GUEST=linux on qemu_virt_aarch64))
endif
	@$(MAKE) --no-print-directory GUEST=linux BLK=device BUILD_DIR=$(BUILD_DIR)-crash \
	    LINUX_BOOTARGS="$(LINUX_BOOTARGS) guest_ram.crash=1" crash-test-run
crash-test-run: $(IMAGE_FILE)
	@$(DISK_TEST) crash $(DISK_IMAGE) $(BLK_DISK_FILE) $(BUILD_DIR) $(QEMU_TIMEOUT) $(QEMU_CMD)
# BLK-DEVICE-TESTS: end

# GUEST=linux: the same kernel, initrd and disk on seL4 (this system) and
# on plain QEMU (-machine virt -cpu cortex-a53, 128 MiB, QEMU's own
# virtio-blk), one right after the other, LINUX_RUNS times: the wall time
# from QEMU's start to the suite's first pass line (`linux: ok 1`: the
# boot) and to its summary line (the disk phases too), and each run's dd lines
# (128 MiB read from the raw device and 128 MiB written to a file, both
# O_DIRECT) with seL4's rate against plain QEMU's. With BLK=device both
# use the same QEMU virtio-blk device on a fresh copy of the same disk
# image with the same cache mode: like against like.
LINUX_RUNS ?= 3
PLAIN_QEMU_CMD = qemu-system-aarch64 -machine virt -cpu cortex-a53 -m 128M -nographic \
    -kernel $(LINUX_IMAGE) -initrd $(INITRD) -append "$(LINUX_BOOTARGS)" \
    -drive file=$(BUILD_DIR)/plain-disk.img,if=none,format=raw,id=disk,cache=$(BLK_CACHE) \
    -device virtio-blk-device,drive=disk,bus=virtio-mmio-bus.0 -global virtio-mmio.force-legacy=false
bench-linux: $(IMAGE_FILE)
ifneq ($(GUEST),linux)
	$(error bench-linux compares the Linux guest: make GUEST=linux bench-linux)
endif
	@timed() { log=$$1; shift; rm -f $$log; start=$$(date +%s%N); \
	    "$$@" < /dev/null > $$log 2>&1 & pid=$$!; first=; \
	    for i in $$(seq $$(( $(QEMU_TIMEOUT) * 20 ))); do \
	        [ -n "$$first" ] || ! grep -qE '^linux: ok 1 ' $$log || first=$$(date +%s%N); \
	        grep -qE '^linux: virtio-blk [0-9]+/[0-9]+ passed' $$log && break; \
	        kill -0 $$pid 2>/dev/null || break; sleep 0.05; \
	    done; end=$$(date +%s%N); kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; \
	    grep -qE '^linux: virtio-blk ([0-9]+)/\1 passed' $$log || { echo "bench-linux: FAILED (see $$log)"; exit 1; }; \
	    echo $$(( (end - start) / 1000000 )) $$(( (first - start) / 1000000 )); }; \
	for run in $$(seq $(LINUX_RUNS)); do \
	    $(if $(filter device,$(BLK)),cp $(DISK_IMAGE) $(BLK_DISK_FILE);) \
	    sel4=$$(timed $(BUILD_DIR)/bench-sel4.log $(QEMU_CMD)) || exit 1; \
	    cp $(DISK_IMAGE) $(BUILD_DIR)/plain-disk.img; \
	    plain=$$(timed $(BUILD_DIR)/bench-plain.log $(PLAIN_QEMU_CMD)) || exit 1; \
	    set -- $$sel4 $$plain; \
	    echo "bench-linux: run $$run: QEMU start to the first pass line (linux: ok 1): seL4 $$2 ms, plain QEMU $$4 ms ($$(( $$2 * 100 / $$4 ))%)"; \
	    echo "bench-linux: run $$run: QEMU start to the summary line: seL4 $$1 ms, plain QEMU $$3 ms ($$(( $$1 * 100 / $$3 ))%)"; \
	    sed -n 's/^linux: dd: /bench-linux:   seL4  dd: /p' $(BUILD_DIR)/bench-sel4.log; \
	    sed -n 's/^linux: dd: /bench-linux:   plain dd: /p' $(BUILD_DIR)/bench-plain.log; \
	    for op in read written; do \
	        a=$$(sed -n "s/^linux: dd: 128 MiB $$op .*: \([0-9]*\) MiB\/s/\1/p" $(BUILD_DIR)/bench-sel4.log | head -1); \
	        b=$$(sed -n "s/^linux: dd: 128 MiB $$op .*: \([0-9]*\) MiB\/s/\1/p" $(BUILD_DIR)/bench-plain.log | head -1); \
	        [ -n "$$a" ] && [ -n "$$b" ] && [ $$b -gt 0 ] && echo "bench-linux:   dd $$op: seL4 $$a MiB/s, plain $$b MiB/s: $$(( a * 100 / b ))%"; \
	    done; \
	done

# GUEST=linux VMS=2: the network, on seL4 (two VMs, the net PD between
# them) and on two plain QEMU processes joined by -netdev socket on
# 127.0.0.1 (QEMU's own virtio-net), one after the other, NET_RUNS times:
# the same kernel and initrd, /init running only its network test
# (GUEST_BENCH=net: ping RTT, NET_MIB MiB over TCP each way at once).
# MICROKIT_CONFIG=smp-debug runs seL4's side on the SMP system (4 cores:
# each VM on its own, as plain QEMU runs each VM in its own process; an
# idle guest sleeps there too, woken by the timer PD on core 0). The
# default is one core: both VMs on it.
# BENCH_HOST_CPUS (taskset's list, e.g. 0): pins every QEMU of the run to
# those host CPUs, so that both sides get the same host CPU time. Unpinned
# (the default), the two plain QEMU processes run their two emulated CPUs
# on two host CPUs, while the one-core seL4 system emulates one CPU for
# both VMs on one host thread.
NET_RUNS ?= 2
BENCH_NET_PORT ?= 47119
BENCH_PIN = $(if $(BENCH_HOST_CPUS),taskset -c $(BENCH_HOST_CPUS))
BENCH_PINNED = $(if $(BENCH_HOST_CPUS),; host CPUs $(BENCH_HOST_CPUS) only,; unpinned)
# $(1): the VM, $(2): listen or connect.
plain_net_qemu = qemu-system-aarch64 -machine virt -cpu cortex-a53 -m 128M -nographic -serial none -monitor none \
    -kernel $(LINUX_IMAGE) -initrd $(INITRD) \
    -append "console=hvc0 GUEST_VM=$(1) GUEST_VMS=2 GUEST_BENCH=net GUEST_NET_MIB=$(NET_MIB)" \
    -chardev stdio,id=con -device virtio-serial-device -device virtconsole,chardev=con \
    -netdev socket,id=net,$(2)=127.0.0.1:$(BENCH_NET_PORT) \
    -device virtio-net-device,netdev=net,mac=02:00:00:00:00:0$(shell echo $$(($(1) + 1)))$(if $(BENCH_PLAIN_MTU),$(comma)host_mtu=$(BENCH_PLAIN_MTU)) \
    -global virtio-mmio.force-legacy=false
bench-net:
ifneq ($(GUEST)/$(VMS),linux/2)
	$(error bench-net compares two Linux VMs: make GUEST=linux VMS=2 bench-net)
endif
	@$(MAKE) --no-print-directory GUEST=linux VMS=2 BUILD_DIR=$(BUILD_DIR)-bench-net \
	    LINUX_BOOTARGS='console=hvc0 GUEST_BENCH=net' bench-net-run

bench-net-run: $(IMAGE_FILE)
	@lines() { sed -n 's/^\(vm[01]| \)\{0,1\}linux: net: \(ping\|received\)/bench-net:   '"$$1"' \2/p' $$2; }; \
	for run in $$(seq $(NET_RUNS)); do \
	    log=$(BUILD_DIR)/bench-net-sel4.log; rm -f $$log; \
	    $(BENCH_PIN) $(QEMU_CMD) < /dev/null > $$log 2>&1 & qemu=$$!; \
	    for i in $$(seq $(QEMU_TIMEOUT)); do kill -0 $$qemu 2>/dev/null || break; sleep 1; done; \
	    kill $$qemu 2>/dev/null; wait $$qemu 2>/dev/null; \
	    [ "$$(grep -cE '^vm[01]\| linux: net: ([0-9]+)/\1 passed' $$log)" = 2 ] || { echo "bench-net: seL4 run FAILED (see $$log)"; exit 1; }; \
	    echo "bench-net: run $$run, seL4 (the net PD, MTU $(NET_MTU); $(MICROKIT_CONFIG), $(if $(filter smp-%,$(MICROKIT_CONFIG)),4 cores: a VM per core,one core: both VMs)$(BENCH_PINNED)):"; lines seL4 $$log; \
	    grep -aE '^INFO: (net: (port|vm[0-9] powered)|vmm[0-9]: guest faults)' $$log | sed 's/^/bench-net:   /'; \
	    p0=$(BUILD_DIR)/bench-net-plain0.log; p1=$(BUILD_DIR)/bench-net-plain1.log; \
	    $(BENCH_PIN) $(call plain_net_qemu,0,listen) < /dev/null > $$p0 2>&1 & q0=$$!; sleep 1; \
	    $(BENCH_PIN) $(call plain_net_qemu,1,connect) < /dev/null > $$p1 2>&1 & q1=$$!; \
	    for i in $$(seq $(QEMU_TIMEOUT)); do kill -0 $$q0 2>/dev/null || kill -0 $$q1 2>/dev/null || break; sleep 1; done; \
	    kill $$q0 $$q1 2>/dev/null; wait $$q0 $$q1 2>/dev/null; \
	    for f in $$p0 $$p1; do grep -qE '^linux: net: ([0-9]+)/\1 passed' $$f || { echo "bench-net: plain QEMU run FAILED (see $$f)"; exit 1; }; done; \
	    echo "bench-net: run $$run, plain QEMU (-netdev socket, MTU $(or $(BENCH_PLAIN_MTU),1500)$(BENCH_PINNED)):"; lines plain $$p0; lines plain $$p1; \
	done

# GUEST=linux: the wall time from QEMU's start to each VM's first suite
# summary line (any VMS; with VMS=N, each VM's). Run it for VMS=1 and
# VMS=2 one after the other to see what the second VM costs the first.
boot-time: $(IMAGE_FILE)
ifneq ($(GUEST),linux)
	$(error boot-time times the Linux guests: make GUEST=linux [VMS=N] boot-time)
endif
	@guests/linux/boot-time.sh $(BUILD_DIR)/boot-time.log $(QEMU_TIMEOUT) $(QEMU_CMD)

# The copy service measured on seL4: Microkit's benchmark config on
# qemu_virt_aarch64, the benchmark PD added (BENCH=yes), QEMU with
# -icount shift=0 so that the cycle counts repeat from run to run.
bench-qemu:
	@$(MAKE) --no-print-directory MICROKIT_BOARD=qemu_virt_aarch64 MICROKIT_CONFIG=benchmark \
	    BENCH=yes BUILD_DIR=build/qemu_virt_aarch64/bench$(if $(filter wide,$(MEMCPY)),-wide) bench-qemu-run

# Shell for a recipe: QEMU_CMD under -icount shift=0 (time advances with
# executed instructions), its output in $(1), until a line matches the
# pattern $(2), QEMU ends or QEMU_TIMEOUT seconds pass; then `log` is $(1).
define qemu_icount
log=$(1); rm -f $$log; \
	$(QEMU_CMD) -icount shift=0 < /dev/null > $$log 2>&1 & qemu=$$!; \
	for i in $$(seq $(QEMU_TIMEOUT)); do \
	    grep -q '$(2)' $$log && break; kill -0 $$qemu 2>/dev/null || break; sleep 1; \
	done; kill $$qemu 2>/dev/null; wait $$qemu 2>/dev/null
endef

bench-qemu-run: $(IMAGE_FILE)
	@$(call qemu_icount,$(BUILD_DIR)/bench.log,^bench-qemu: done); \
	grep '^bench-qemu:' $$log || { cat $$log; echo "bench-qemu: FAILED (see $$log)"; exit 1; }; \
	grep -q '^bench-qemu: done (0 failed)' $$log

# The one-copy block path against a local copy in the blk PD, in one QEMU
# run with -icount shift=0: virtual time advances with executed
# instructions, so both figures repeat exactly from run to run (the
# wall-clock figures qemu-test prints vary with QEMU's software-TLB
# refills, which cost nothing here). BLK_COPIES=2 measures the two-copy path.
bench-blk:
	@$(MAKE) --no-print-directory MICROKIT_BOARD=qemu_virt_aarch64 GUEST=baremetal \
	    BUILD_DIR=build/qemu_virt_aarch64/bench-blk$(if $(filter 2,$(BLK_COPIES)),-two-copy)$(if $(filter wide,$(MEMCPY)),-wide) bench-blk-run

bench-blk-run: $(IMAGE_FILE)
	@$(call qemu_icount,$(BUILD_DIR)/bench-blk.log,vmm: guest exited); \
	awk '/blk: local copy of 1024 KiB/ { for (i = 1; i <= NF; i++) if ($$i == "cold") local = $$(i + 1) } \
	    /blk: 1 request\(s\), 1048576 bytes in/ { \
	        n++; for (i = 1; i <= NF; i++) { if ($$i == "PPCs") ppcs = $$(i - 1); if ($$i == "ticks") t = $$(i - 1) } \
	        if (local > 0 && t > 0) printf "bench-blk: 1 MiB read %d: %d ticks in %d PPCs; local 1 MiB copy %d ticks: %.2fx its speed\n", n, t, ppcs, local, local / t; \
	        else bad = 1 } \
	    END { if (n == 0 || bad) { print "bench-blk: FAILED: no 1 MiB read and local copy figures"; exit 1 } }' $$log \
	    || { tail -20 $$log; echo "bench-blk: see $$log"; exit 1; }

clean:
	rm -rf build target pds/target
