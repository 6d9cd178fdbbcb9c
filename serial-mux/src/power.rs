// SPDX-License-Identifier: BSD-2-Clause
//! Which VMs are still running: the machine powers off after the last.
//!
//! Each VM starts running. Its VMM reports a guest's power-off (PSCI
//! `SYSTEM_OFF`) and a restart; when [`PowerTracker::powered_off`] says
//! every VM is off, the serial PD flushes the consoles and powers the
//! machine off. Every operation is `O(1)` but [`PowerTracker::running`],
//! which is `O(VMS)`.
//!
//! ```
//! use serial_mux::PowerTracker;
//! let mut power = PowerTracker::<2>::new();
//! assert_eq!(power.powered_off(0), Ok(false));
//! assert_eq!(power.powered_off(1), Ok(true)); // the last one: all off
//! assert!(power.all_off());
//! ```

use crate::{check_vm, Error};

/// Whether each of `VMS` VMs is running.
#[derive(Clone, Debug)]
pub struct PowerTracker<const VMS: usize> {
    on: [bool; VMS],
    running: usize,
}

impl<const VMS: usize> Default for PowerTracker<VMS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const VMS: usize> PowerTracker<VMS> {
    /// Every VM running.
    pub const fn new() -> Self {
        PowerTracker {
            on: [true; VMS],
            running: VMS,
        }
    }

    /// VM `vm` powered off (again is no change); returns whether every VM
    /// is now off.
    pub fn powered_off(&mut self, vm: usize) -> Result<bool, Error> {
        let on = self
            .on
            .get_mut(vm)
            .ok_or(Error::NoSuchVm { vm, vms: VMS })?;
        if *on {
            *on = false;
            self.running = self.running.saturating_sub(1);
        }
        Ok(self.all_off())
    }

    /// VM `vm` runs again (restarted, or started after a power-off).
    pub fn restarted(&mut self, vm: usize) -> Result<(), Error> {
        let on = self
            .on
            .get_mut(vm)
            .ok_or(Error::NoSuchVm { vm, vms: VMS })?;
        if !*on {
            *on = true;
            self.running = self.running.saturating_add(1);
        }
        Ok(())
    }

    /// Whether VM `vm` is running.
    pub fn is_on(&self, vm: usize) -> Result<bool, Error> {
        self.on
            .get(check_vm(vm, VMS)?)
            .copied()
            .ok_or(Error::NoSuchVm { vm, vms: VMS })
    }

    /// How many VMs are running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether every VM is off (with no VMs, true).
    pub fn all_off(&self) -> bool {
        self.running == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_one_turns_off_the_lights() {
        let mut power = PowerTracker::<3>::new();
        assert_eq!(power.running(), 3);
        assert_eq!(power.powered_off(1), Ok(false));
        assert_eq!(power.powered_off(1), Ok(false));
        assert_eq!(power.running(), 2);
        assert_eq!(power.powered_off(0), Ok(false));
        assert_eq!(power.restarted(1), Ok(()));
        assert_eq!(power.restarted(1), Ok(()));
        assert_eq!(power.is_on(1), Ok(true));
        assert_eq!(power.powered_off(2), Ok(false));
        assert_eq!(power.powered_off(1), Ok(true));
        assert!(power.all_off());
        assert_eq!(power.is_on(0), Ok(false));
        assert_eq!(power.powered_off(3), Err(Error::NoSuchVm { vm: 3, vms: 3 }));
        assert_eq!(power.restarted(3), Err(Error::NoSuchVm { vm: 3, vms: 3 }));
        assert_eq!(power.is_on(3), Err(Error::NoSuchVm { vm: 3, vms: 3 }));
        assert!(PowerTracker::<0>::new().all_off());
    }
}
