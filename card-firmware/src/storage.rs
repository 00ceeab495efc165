//! Tearing-safe persistent storage.
//!
//! Two layers, after OpenSK's `persistent_store`:
//!
//! - [`Storage`] is the medium: a fixed-size byte array that can be read and written at an offset,
//!   in write units (pages). A write that returns `Ok` is durable. [`RamStorage`] keeps it in RAM
//!   and can cut power after the N-th write (optionally tearing that write in half) so tests can
//!   prove every command survives power loss; `FileStorage` (feature `std`) backs it with a file
//!   and `fsync`s every write.
//! - [`Journal`] stores one record (the encoded card state) in two slots. A commit writes the new
//!   record into the slot that does *not* hold the current one, payload first and header last; the
//!   header carries a counter and a SHA-256 checksum over header and payload. Recovery reads both
//!   slots and keeps the valid one with the highest counter, and never writes, so a power cut during
//!   recovery is harmless. A cut at any write therefore leaves either the old or the new record.
//! - The medium starts with a format block, written once when the card is formatted and never
//!   again: magic, the slot size, a checksum. Recovery takes the slot size from there, not from the
//!   medium's length, so a damaged or resized image (a large sparse file, a header claiming 4 GB)
//!   never makes the card allocate more than one slot; slots are at most [`MAX_SLOT`] bytes.
//!   Media formatted before the format block existed are read with the old layout (two halves of the
//!   medium), their records bounded by [`MAX_SLOT`] as well.

use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A byte-addressed persistent medium of fixed capacity.
pub trait Storage {
    /// Size of the medium in bytes.
    fn capacity(&self) -> usize;
    /// Preferred write size: the journal never writes more than this in one call, so a power
    /// cut is modelled per page.
    fn write_unit(&self) -> usize;
    /// Fill `buf` from `offset`.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()>;
    /// Write `bytes` at `offset`; durable once it returns `Ok`.
    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()>;
}

/// RAM storage with power-cut injection, for tests, fuzzing and in-memory simulators.
#[derive(Clone)]
pub struct RamStorage {
    bytes: Vec<u8>,
    unit: usize,
    writes: usize,
    cut_after: Option<usize>,
    torn: bool,
    powered: bool,
}

impl core::fmt::Debug for RamStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The medium holds key material: show only its shape.
        f.debug_struct("RamStorage")
            .field("capacity", &self.bytes.len())
            .field("writes", &self.writes)
            .field("powered", &self.powered)
            .finish()
    }
}

impl RamStorage {
    /// Erased (all `FF`) storage of `capacity` bytes written in units of `write_unit` bytes.
    pub fn new(capacity: usize, write_unit: usize) -> Self {
        Self {
            bytes: vec![0xFF; capacity],
            unit: write_unit.max(1),
            writes: 0,
            cut_after: None,
            torn: false,
            powered: true,
        }
    }

    /// Number of successful writes so far (the counter tests use to enumerate cut points).
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// Let `n` more writes succeed, then lose power on the next one. With `torn`, that write
    /// stores only its first half before power goes.
    pub fn cut_power_after(&mut self, n: usize, torn: bool) {
        self.cut_after = Some(self.writes.saturating_add(n));
        self.torn = torn;
    }

    /// Whether power was cut.
    pub fn power_lost(&self) -> bool {
        !self.powered
    }

    /// Power comes back: the medium keeps what was written, and no further cut is scheduled.
    pub fn restore_power(&mut self) {
        self.powered = true;
        self.cut_after = None;
    }
}

impl Storage for RamStorage {
    fn capacity(&self) -> usize {
        self.bytes.len()
    }

    fn write_unit(&self) -> usize {
        self.unit
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        if !self.powered {
            return Err(Error::PowerLost);
        }
        let end = offset.checked_add(buf.len()).ok_or(Error::StorageIo)?;
        let src = self.bytes.get(offset..end).ok_or(Error::StorageIo)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        if !self.powered {
            return Err(Error::PowerLost);
        }
        let end = offset.checked_add(bytes.len()).ok_or(Error::StorageIo)?;
        let dst = self.bytes.get_mut(offset..end).ok_or(Error::StorageIo)?;
        if self.cut_after == Some(self.writes) {
            if self.torn {
                let half = bytes.len() / 2;
                if let (Some(d), Some(s)) = (dst.get_mut(..half), bytes.get(..half)) {
                    d.copy_from_slice(s);
                }
            }
            self.powered = false;
            return Err(Error::PowerLost);
        }
        dst.copy_from_slice(bytes);
        self.writes = self.writes.saturating_add(1);
        Ok(())
    }
}

/// File-backed storage: the card image is a file of fixed size; every write is followed by
/// `fsync` (`sync_data`) so a write that returned is on disk.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FileStorage {
    file: std::fs::File,
    capacity: usize,
}

#[cfg(feature = "std")]
impl FileStorage {
    /// Write unit for files: one page.
    pub const WRITE_UNIT: usize = 4096;

    /// Open an existing image read-write; its length is the capacity.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len();
        let capacity = usize::try_from(len)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "image too large"))?;
        Ok(Self { file, capacity })
    }

    /// Create a new erased image of `capacity` bytes; fails if `path` exists.
    pub fn create(path: &std::path::Path, capacity: usize) -> std::io::Result<Self> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(&vec![0xFF; capacity])?;
        file.sync_all()?;
        Ok(Self { file, capacity })
    }
}

#[cfg(feature = "std")]
impl Storage for FileStorage {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn write_unit(&self) -> usize {
        Self::WRITE_UNIT
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset as u64))
            .map_err(|_| Error::StorageIo)?;
        file.read_exact(buf).map_err(|_| Error::StorageIo)
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let end = offset.checked_add(bytes.len()).ok_or(Error::StorageIo)?;
        if end > self.capacity {
            return Err(Error::StorageFull);
        }
        self.file
            .seek(SeekFrom::Start(offset as u64))
            .map_err(|_| Error::StorageIo)?;
        self.file.write_all(bytes).map_err(|_| Error::StorageIo)?;
        self.file.sync_data().map_err(|_| Error::StorageIo)
    }
}

const MAGIC: [u8; 4] = *b"PIJ1";
/// magic(4) ‖ counter(4) ‖ length(4) ‖ checksum(16)
const HEADER_LEN: usize = 28;
const CHECKSUM_LEN: usize = 16;
const FORMAT_MAGIC: [u8; 4] = *b"PIF2";
/// magic(4) ‖ slot size(4) ‖ checksum(16), at offset 0.
const FORMAT_LEN: usize = 24;

/// Largest journal slot (header included): the most recovery ever allocates for a record. The
/// card's state with every quota full is under 48 KiB (docs/card-firmware.md, "Quotas").
pub const MAX_SLOT: usize = 256 * 1024;

/// Two-slot journal holding one record; see the module docs for the protocol.
#[derive(Debug)]
pub struct Journal<S: Storage> {
    storage: S,
    /// Where the slots start and how large each is, as formatted.
    layout: Layout,
    /// Slot holding the current record and its counter.
    current: (usize, u32),
}

/// Where a medium's two slots are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Offset of slot 0 (slot 1 follows it).
    base: usize,
    /// Size of each slot, header included.
    slot_size: usize,
}

impl Layout {
    fn offset(self, slot: usize) -> usize {
        self.base
            .saturating_add(slot.saturating_mul(self.slot_size))
    }

    fn max_record(self) -> usize {
        self.slot_size.min(MAX_SLOT).saturating_sub(HEADER_LEN)
    }
}

fn format_checksum(slot_size: u32) -> [u8; CHECKSUM_LEN] {
    let mut h = Sha256::new();
    h.update(FORMAT_MAGIC);
    h.update(slot_size.to_be_bytes());
    let digest = h.finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

/// The layout of `storage`: from its format block, or the layout of media formatted before it
/// existed (two halves), bounded by [`MAX_SLOT`] either way.
fn read_layout<S: Storage>(storage: &S) -> Result<Layout> {
    let capacity = storage.capacity();
    if capacity < FORMAT_LEN {
        return Err(Error::Corrupt("storage too small for a journal"));
    }
    let mut block = [0u8; FORMAT_LEN];
    storage.read(0, &mut block)?;
    let mut r = crate::codec::Reader::new(&block);
    let magic = r.array::<4>()?;
    let size = r.u32()?;
    let sum = r.array::<CHECKSUM_LEN>()?;
    let formatted: bool =
        subtle::ConstantTimeEq::ct_eq(&format_checksum(size)[..], &sum[..]).into();
    if magic == FORMAT_MAGIC && formatted {
        let slot_size = usize::try_from(size).unwrap_or(usize::MAX);
        let fits = slot_size
            .checked_mul(2)
            .and_then(|n| n.checked_add(FORMAT_LEN))
            .is_some_and(|end| end <= capacity);
        if !(HEADER_LEN..=MAX_SLOT).contains(&slot_size) || !fits {
            return Err(Error::Corrupt("format block names an impossible slot size"));
        }
        return Ok(Layout {
            base: FORMAT_LEN,
            slot_size,
        });
    }
    // Before the format block: two halves of the medium.
    Ok(Layout {
        base: 0,
        slot_size: capacity / 2,
    })
}

fn checksum(counter: u32, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(counter.to_be_bytes());
    h.update((payload.len() as u64).to_be_bytes());
    h.update(payload);
    let digest = h.finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

impl<S: Storage> Journal<S> {
    /// Largest record that fits.
    pub fn max_record(&self) -> usize {
        self.layout.max_record()
    }

    /// The size of each slot, header included, as the medium was formatted.
    pub fn slot_size(&self) -> usize {
        self.layout.slot_size
    }

    /// Format blank (or to-be-discarded) storage: the format block with the slot size (half of
    /// what follows it, at most [`MAX_SLOT`]), then the first record into slot 0.
    pub fn format(mut storage: S, record: &[u8]) -> Result<Self> {
        let slot_size = (storage.capacity().saturating_sub(FORMAT_LEN) / 2).min(MAX_SLOT);
        if slot_size < HEADER_LEN {
            return Err(Error::Corrupt("storage too small for a journal"));
        }
        let size = u32::try_from(slot_size).map_err(|_| Error::StorageFull)?;
        let mut block = Vec::with_capacity(FORMAT_LEN);
        block.extend_from_slice(&FORMAT_MAGIC);
        block.extend_from_slice(&size.to_be_bytes());
        block.extend_from_slice(&format_checksum(size));
        storage.write(0, &block)?;
        // Start from "slot 1 holds counter 0" so the first commit goes to slot 0 with counter 1;
        // invalidate slot 1 in case the medium held an older image.
        let layout = Layout {
            base: FORMAT_LEN,
            slot_size,
        };
        let mut journal = Self {
            storage,
            layout,
            current: (1, 0),
        };
        journal
            .storage
            .write(layout.offset(1), &[0u8; HEADER_LEN])?;
        journal.commit(record)?;
        Ok(journal)
    }

    /// Recover the newest valid record. Never writes.
    pub fn open(storage: S) -> Result<(Self, Vec<u8>)> {
        let layout = read_layout(&storage)?;
        if layout.slot_size < HEADER_LEN {
            return Err(Error::Corrupt("storage too small for a journal"));
        }
        let mut best: Option<(usize, u32, Vec<u8>)> = None;
        for slot in 0..2 {
            if let Some((counter, payload)) = Self::read_slot(&storage, layout, slot)? {
                let newer = match &best {
                    Some((_, c, _)) => counter > *c,
                    None => true,
                };
                if newer {
                    best = Some((slot, counter, payload));
                }
            }
        }
        match best {
            Some((slot, counter, payload)) => Ok((
                Self {
                    storage,
                    layout,
                    current: (slot, counter),
                },
                payload,
            )),
            None => Err(Error::Corrupt("no valid state record")),
        }
    }

    fn read_slot(storage: &S, layout: Layout, slot: usize) -> Result<Option<(u32, Vec<u8>)>> {
        let base = layout.offset(slot);
        let mut header = [0u8; HEADER_LEN];
        storage.read(base, &mut header)?;
        let mut r = crate::codec::Reader::new(&header);
        let magic = r.array::<4>()?;
        let counter = r.u32()?;
        let len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        let sum = r.array::<CHECKSUM_LEN>()?;
        // The payload lies inside the slot: what recovery allocates is bounded by the formatted
        // slot size (and by MAX_SLOT for media formatted before the format block), never by the
        // length a damaged header claims.
        if magic != MAGIC || len > layout.max_record() {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        storage.read(base.saturating_add(HEADER_LEN), &mut payload)?;
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(&checksum(counter, &payload)[..], &sum[..]).into();
        Ok(ok.then_some((counter, payload)))
    }

    /// Atomically replace the record: after a power cut at any point, [`Journal::open`] returns
    /// either the previous record or `record`.
    pub fn commit(&mut self, record: &[u8]) -> Result<()> {
        if record.len() > self.max_record() {
            return Err(Error::StorageFull);
        }
        let (cur_slot, cur_counter) = self.current;
        let target = 1 - cur_slot.min(1);
        let counter = cur_counter.checked_add(1).ok_or(Error::StorageFull)?;
        let base = self.layout.offset(target);
        let unit = self.storage.write_unit();
        let mut offset = base.saturating_add(HEADER_LEN);
        for chunk in record.chunks(unit) {
            self.storage.write(offset, chunk)?;
            offset = offset.saturating_add(chunk.len());
        }
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&counter.to_be_bytes());
        header.extend_from_slice(
            &u32::try_from(record.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        header.extend_from_slice(&checksum(counter, record));
        self.storage.write(base, &header)?;
        self.current = (target, counter);
        Ok(())
    }

    /// The medium, e.g. to inspect the write counter in tests.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The medium, mutably (to schedule a power cut in tests).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Give the medium back (power off).
    pub fn into_storage(self) -> S {
        self.storage
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_recover() {
        let j = Journal::format(RamStorage::new(1024, 16), b"first").unwrap();
        let (mut j, rec) = Journal::open(j.into_storage()).unwrap();
        assert_eq!(rec, b"first");
        j.commit(b"second record, longer than one unit").unwrap();
        let (_, rec) = Journal::open(j.into_storage()).unwrap();
        assert_eq!(rec, b"second record, longer than one unit");
    }

    #[test]
    fn blank_storage_is_corrupt() {
        assert!(matches!(
            Journal::open(RamStorage::new(1024, 16)),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn too_large_is_refused_and_keeps_old() {
        let mut j = Journal::format(RamStorage::new(128, 16), b"old").unwrap();
        assert_eq!(j.commit(&[0u8; 100]), Err(Error::StorageFull));
        let (_, rec) = Journal::open(j.into_storage()).unwrap();
        assert_eq!(rec, b"old");
    }

    /// A medium in the layout from before the format block: slot 0 at offset 0, slot 1 at half
    /// the capacity, `record` in slot 0.
    fn legacy_image(capacity: usize, record: &[u8], claimed_len: u32) -> RamStorage {
        let mut storage = RamStorage::new(capacity, 16);
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&1u32.to_be_bytes());
        header.extend_from_slice(&claimed_len.to_be_bytes());
        header.extend_from_slice(&checksum(1, record));
        storage.write(HEADER_LEN, record).unwrap();
        storage.write(0, &header).unwrap();
        storage
    }

    #[test]
    fn media_from_before_the_format_block_still_open() {
        let storage = legacy_image(1024, b"legacy", 6);
        let (mut j, rec) = Journal::open(storage).unwrap();
        assert_eq!(rec, b"legacy");
        assert_eq!(j.slot_size(), 512);
        j.commit(b"next").unwrap();
        let (_, rec) = Journal::open(j.into_storage()).unwrap();
        assert_eq!(rec, b"next");
    }

    #[test]
    fn the_formatted_slot_size_survives_a_resized_medium() {
        let mut j = Journal::format(RamStorage::new(1024, 16), b"one").unwrap();
        j.commit(b"two").unwrap();
        let slot = j.slot_size();
        assert_eq!(slot, (1024 - FORMAT_LEN) / 2);
        // The image grows (copied into a larger medium): the slots stay where they were.
        let old = j.into_storage();
        let mut bytes = vec![0u8; 1024];
        old.read(0, &mut bytes).unwrap();
        let mut bigger = RamStorage::new(64 * 1024, 16);
        bigger.write(0, &bytes).unwrap();
        let (j, rec) = Journal::open(bigger).unwrap();
        assert_eq!(rec, b"two");
        assert_eq!(j.slot_size(), slot);
        // Slots never exceed MAX_SLOT, however large the medium.
        let j = Journal::format(RamStorage::new(2 * MAX_SLOT + 4096, 16), b"x").unwrap();
        assert_eq!(j.slot_size(), MAX_SLOT);
    }

    #[test]
    fn a_header_claiming_more_than_a_slot_is_not_read() {
        // A legacy header claiming 4 GB: not a record (whatever the medium's size, recovery reads
        // at most one slot); the other slot is empty, so there is no state.
        let storage = legacy_image(4096, b"legacy", u32::MAX);
        assert!(matches!(Journal::open(storage), Err(Error::Corrupt(_))));
        // The same in the formatted layout: the damaged newer slot is skipped, the older wins.
        let mut j = Journal::format(RamStorage::new(4096, 16), b"older").unwrap();
        j.commit(b"newer").unwrap();
        let slot = j.slot_size();
        let mut storage = j.into_storage();
        let len_at = FORMAT_LEN + slot + 8;
        storage.write(len_at, &u32::MAX.to_be_bytes()).unwrap();
        let (_, rec) = Journal::open(storage).unwrap();
        assert_eq!(rec, b"older");
    }

    #[test]
    fn a_damaged_format_block_is_not_trusted() {
        let j = Journal::format(RamStorage::new(1024, 16), b"one").unwrap();
        let mut storage = j.into_storage();
        // A slot size that does not fit the medium, with a valid checksum.
        let size = 10_000u32;
        let mut block = FORMAT_MAGIC.to_vec();
        block.extend_from_slice(&size.to_be_bytes());
        block.extend_from_slice(&format_checksum(size));
        storage.write(0, &block).unwrap();
        assert!(matches!(Journal::open(storage), Err(Error::Corrupt(_))));
    }

    #[test]
    fn every_cut_point_leaves_old_or_new() {
        let records: [&[u8]; 4] = [b"v1", &[7u8; 70], b"v3-short", &[9u8; 33]];
        for torn in [false, true] {
            for step in 1..records.len() {
                for n in 0.. {
                    // Build the state before `step` cleanly.
                    let mut j = Journal::format(RamStorage::new(512, 16), records[0]).unwrap();
                    for r in &records[1..step] {
                        j.commit(r).unwrap();
                    }
                    j.storage_mut().cut_power_after(n, torn);
                    let done = j.commit(records[step]).is_ok();
                    let mut storage = j.into_storage();
                    storage.restore_power();
                    let (mut j2, rec) = Journal::open(storage).unwrap();
                    if done {
                        assert_eq!(rec, records[step]);
                    } else {
                        assert!(rec == records[step] || rec == records[step - 1]);
                    }
                    // The journal keeps working after recovery.
                    j2.commit(b"after").unwrap();
                    let (_, rec) = Journal::open(j2.into_storage()).unwrap();
                    assert_eq!(rec, b"after");
                    if done {
                        break;
                    }
                }
            }
        }
    }
}
