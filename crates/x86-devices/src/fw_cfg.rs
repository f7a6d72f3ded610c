//! QEMU's firmware configuration device, I/O interface only (QEMU's
//! `docs/specs/fw_cfg.rst`): ports `0x510` (selector, 16-bit write) and `0x511` (data,
//! read a byte at a time). No DMA interface: the ID item says so (bit 0 only).
//!
//! Writing a key to the selector picks an item and rewinds it; each data read returns
//! the item's next byte, and 0 past its end or for a key with no item. Data-port writes
//! are ignored (as in QEMU since 2.4). The items:
//!
//! | key | item | encoding |
//! |---|---|---|
//! | `0x00` | signature | `"QEMU"` |
//! | `0x01` | ID (feature bits) | u32 LE, 1: traditional interface |
//! | `0x03` | RAM size | u64 LE, bytes |
//! | `0x05` | NB_CPUS: boot CPUs | u16 LE |
//! | `0x0f` | MAX_CPUS: possible CPUs | u16 LE |
//! | `0x19` | file directory | u32 BE count, then per file: u32 BE size, u16 BE key, u16 reserved, 56-byte NUL-padded name, sorted by name |
//! | `0x20..` | the files, in directory order | as given |
//!
//! kvm-unit-tests (`lib/x86/fwcfg.c`) reads NB_CPUS to size its CPU array, RAM_SIZE,
//! and key `0x11` (its FW_CFG_MAX_RAM, unknown to QEMU, so it reads 0: no limit).

use std::sync::{Mutex, MutexGuard};

use cpu_topology::VcpuIndex;

use crate::bus::{BusDevice, DeviceAction, Range};

/// The selector port.
pub const FW_CFG_PORT: u16 = 0x510;
/// Selector and data ports.
pub const FW_CFG_RANGE: Range = Range::ports(FW_CFG_PORT, 2);
/// Key: the signature.
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Key: the feature bits.
pub const FW_CFG_ID: u16 = 0x01;
/// Key: RAM size in bytes.
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// Key: boot CPU count.
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Key: possible CPU count.
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// Key: the file directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// Key of the first file.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Longest file name, without its terminating NUL.
pub const FW_CFG_MAX_NAME: usize = 55;
/// The write-channel bit of a key (ignored: no item is writable).
const WRITE_CHANNEL: u16 = 0x4000;
/// Keys from here on are not items (QEMU's `FW_CFG_INVALID`).
const INVALID: u16 = 0xffff;

/// Why an item could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FwCfgError {
    /// The name is empty, too long or has a NUL byte.
    #[error("fw_cfg file name {name:?}: must be 1..={FW_CFG_MAX_NAME} bytes without NUL")]
    BadName {
        /// The name.
        name: String,
    },
    /// A file of that name exists.
    #[error("fw_cfg file {name:?} added twice")]
    DuplicateFile {
        /// The name.
        name: String,
    },
    /// The item is larger than the directory's 32-bit size field.
    #[error("fw_cfg item {name:?} is {len} bytes (at most 4 GiB - 1)")]
    TooLarge {
        /// The item.
        name: String,
        /// Its size.
        len: usize,
    },
    /// A numbered item in the file range, or the directory's own key.
    #[error("fw_cfg key {key:#x} is reserved for the file directory and files")]
    ReservedKey {
        /// The key.
        key: u16,
    },
}

/// What the guest sees: built with [`FwCfgBuilder`], then put on the bus.
#[derive(Debug)]
pub struct FwCfg {
    items: Box<[(u16, Box<[u8]>)]>,
    cursor: Mutex<Cursor>,
}

#[derive(Debug, Default)]
struct Cursor {
    /// Index into `items`, or `None` for a key without an item.
    item: Option<usize>,
    offset: usize,
}

/// Collects the items of an [`FwCfg`].
#[derive(Debug, Clone)]
pub struct FwCfgBuilder {
    items: Vec<(u16, Vec<u8>)>,
    files: Vec<(String, Vec<u8>)>,
}

impl FwCfgBuilder {
    /// Signature, ID, `nb_cpus`, `max_cpus` and `ram_size` (bytes), no files.
    pub fn new(nb_cpus: u16, max_cpus: u16, ram_size: u64) -> Self {
        Self {
            items: vec![
                (FW_CFG_SIGNATURE, b"QEMU".to_vec()),
                (FW_CFG_ID, 1u32.to_le_bytes().to_vec()),
                (FW_CFG_RAM_SIZE, ram_size.to_le_bytes().to_vec()),
                (FW_CFG_NB_CPUS, nb_cpus.to_le_bytes().to_vec()),
                (FW_CFG_MAX_CPUS, max_cpus.to_le_bytes().to_vec()),
            ],
            files: Vec::new(),
        }
    }

    /// Set numbered item `key` (below the file directory's key, `0x19`, or
    /// architecture-local `0x8000..`), replacing any earlier value.
    pub fn item(mut self, key: u16, data: Vec<u8>) -> Result<Self, FwCfgError> {
        let key = key & !WRITE_CHANNEL;
        if (FW_CFG_FILE_DIR..0x8000).contains(&key) || key == INVALID & !WRITE_CHANNEL {
            return Err(FwCfgError::ReservedKey { key });
        }
        self.items.retain(|(k, _)| *k != key);
        self.items.push((key, data));
        Ok(self)
    }

    /// Add file `name` (for example `etc/e820`) with `data`.
    pub fn file(mut self, name: &str, data: Vec<u8>) -> Result<Self, FwCfgError> {
        if name.is_empty() || name.len() > FW_CFG_MAX_NAME || name.contains('\0') {
            return Err(FwCfgError::BadName { name: name.into() });
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::DuplicateFile { name: name.into() });
        }
        if u32::try_from(data.len()).is_err() {
            let len = data.len();
            return Err(FwCfgError::TooLarge {
                name: name.into(),
                len,
            });
        }
        self.files.push((name.into(), data));
        Ok(self)
    }

    /// The device: files sorted by name (as QEMU keeps them) get keys from
    /// [`FW_CFG_FILE_FIRST`] on, and the directory describes them.
    pub fn build(mut self) -> FwCfg {
        self.files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (i, (name, data)) in self.files.iter().enumerate() {
            let key = FW_CFG_FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FW_CFG_MAX_NAME + 1];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        let mut items = self.items;
        items.push((FW_CFG_FILE_DIR, dir));
        for (i, (_, data)) in self.files.into_iter().enumerate() {
            items.push((FW_CFG_FILE_FIRST + i as u16, data));
        }
        items.sort_by_key(|(k, _)| *k);
        FwCfg {
            items: items
                .into_iter()
                .map(|(k, d)| (k, d.into_boxed_slice()))
                .collect(),
            cursor: Mutex::new(Cursor::default()),
        }
    }
}

impl FwCfg {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Select `key` and rewind (a guest selector write).
    pub fn select(&self, key: u16) {
        let key = key & !WRITE_CHANNEL;
        let item = self.items.binary_search_by_key(&key, |(k, _)| *k).ok();
        *self.cursor() = Cursor { item, offset: 0 };
    }

    /// The item of `key`, if any (tests, `info` commands).
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        let i = self.items.binary_search_by_key(&key, |(k, _)| *k).ok()?;
        Some(&self.items[i].1)
    }
}

impl BusDevice for FwCfg {
    fn read(&self, _: VcpuIndex, offset: u64, data: &mut [u8]) -> DeviceAction {
        data.fill(0);
        if offset == 1 {
            let mut cursor = self.cursor();
            if let Some(item) = cursor.item.and_then(|i| self.items.get(i)) {
                let rest = item.1.get(cursor.offset..).unwrap_or_default();
                let n = rest.len().min(data.len());
                data[..n].copy_from_slice(&rest[..n]);
            }
            cursor.offset = cursor.offset.saturating_add(data.len());
        }
        DeviceAction::Continue
    }

    fn write(&self, _: VcpuIndex, offset: u64, data: &[u8]) -> DeviceAction {
        // The selector takes 16-bit writes only (QEMU rejects other sizes).
        if let (0, &[lo, hi]) = (offset, data) {
            self.select(u16::from_le_bytes([lo, hi]));
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VcpuIndex = VcpuIndex(0);

    /// What `fwcfg_get_u()` in kvm-unit-tests does: a 16-bit `out` of the key to 0x510,
    /// then `bytes` single-byte `in`s from 0x511.
    fn get(fw: &FwCfg, key: u16, bytes: usize) -> Vec<u8> {
        fw.write(V, 0, &key.to_le_bytes());
        (0..bytes)
            .map(|_| {
                let mut b = [0xaa];
                fw.read(V, 1, &mut b);
                b[0]
            })
            .collect()
    }

    fn u64_of(bytes: Vec<u8>) -> u64 {
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(&bytes);
        u64::from_le_bytes(b)
    }

    #[test]
    fn the_items_kvm_unit_tests_reads() {
        let fw = FwCfgBuilder::new(4, 8, 256 << 20).build();
        assert_eq!(get(&fw, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(u64_of(get(&fw, FW_CFG_ID, 4)), 1);
        assert_eq!(u64_of(get(&fw, FW_CFG_NB_CPUS, 2)), 4);
        assert_eq!(u64_of(get(&fw, FW_CFG_MAX_CPUS, 2)), 8);
        assert_eq!(u64_of(get(&fw, FW_CFG_RAM_SIZE, 8)), 256 << 20);
        // FW_CFG_MAX_RAM (0x11) is not an item: 0, which setup.c reads as "no limit".
        assert_eq!(u64_of(get(&fw, 0x11, 8)), 0);
        // Past the end: zeros; a new selector write rewinds.
        assert_eq!(get(&fw, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(get(&fw, FW_CFG_SIGNATURE | WRITE_CHANNEL, 1), b"Q");
    }

    #[test]
    fn byte_selector_writes_and_data_writes_are_ignored() {
        let fw = FwCfgBuilder::new(1, 1, 0).build();
        fw.select(FW_CFG_SIGNATURE);
        fw.write(V, 0, &[FW_CFG_NB_CPUS as u8]);
        fw.write(V, 1, &[0x55]);
        let mut b = [0u8; 4];
        fw.read(V, 1, &mut b);
        assert_eq!(&b, b"QEMU", "still the signature");
        let mut sel = [0xaa; 2];
        fw.read(V, 0, &mut sel);
        assert_eq!(sel, [0, 0]);
    }

    #[test]
    fn the_file_directory_lists_files_sorted_by_name() {
        let fw = FwCfgBuilder::new(1, 1, 0)
            .file("opt/zeta", b"zz".to_vec())
            .unwrap()
            .file("etc/alpha", b"hello".to_vec())
            .unwrap()
            .build();
        let dir = get(&fw, FW_CFG_FILE_DIR, 4 + 2 * 64);
        assert_eq!(&dir[..4], &2u32.to_be_bytes());
        let entry = |i: usize| &dir[4 + i * 64..4 + (i + 1) * 64];
        assert_eq!(&entry(0)[..4], &5u32.to_be_bytes());
        assert_eq!(&entry(0)[4..6], &0x20u16.to_be_bytes());
        assert_eq!(&entry(0)[8..18], b"etc/alpha\0");
        assert_eq!(&entry(1)[4..6], &0x21u16.to_be_bytes());
        assert_eq!(&entry(1)[8..17], b"opt/zeta\0");
        assert_eq!(get(&fw, 0x20, 5), b"hello");
        assert_eq!(get(&fw, 0x21, 3), b"zz\0");
    }

    #[test]
    fn bad_items_are_refused() {
        let b = || FwCfgBuilder::new(1, 1, 0);
        let long = "x".repeat(56);
        assert_eq!(
            b().file(&long, vec![]).unwrap_err(),
            FwCfgError::BadName { name: long.clone() }
        );
        assert!(b().file("", vec![]).is_err());
        assert!(b().file("a\0b", vec![]).is_err());
        assert!(b().file(&long[..55], vec![]).is_ok());
        assert_eq!(
            b().file("a", vec![])
                .unwrap()
                .file("a", vec![1])
                .unwrap_err()
                .to_string(),
            "fw_cfg file \"a\" added twice"
        );
        assert_eq!(
            b().item(0x19, vec![]).unwrap_err(),
            FwCfgError::ReservedKey { key: 0x19 }
        );
        assert!(b().item(0x25, vec![]).is_err());
        let fw = b()
            .item(FW_CFG_NB_CPUS, 9u16.to_le_bytes().to_vec())
            .unwrap()
            .build();
        assert_eq!(fw.item(FW_CFG_NB_CPUS), Some(&[9u8, 0][..]));
        assert!(b().item(0x8001, vec![1]).is_ok());
    }
}
