//! The write-ahead log: encrypted, checksummed records in numbered segment files, group commit.
//!
//! Segment file `wal/<id:016x>.wal`:
//!
//! ```text
//! header  "TVWAL\0" | version u16 LE | segment id u64 LE | created unix nanos u64 LE | 8 reserved
//! record  body len u32 LE | crc32c(type || body) u32 LE | type u8 | body
//!   KEY   tenant len u8 | tenant | key index u32 | wrapped data key (76 bytes)
//!   DATA  key index u32 | counter u64 | AES-256-GCM(payload)
//!         payload: 0x01 | record secret [32] | received unix nanos u64 LE
//!                  | zstd(OTLP ExportTraceServiceRequest)
//!   CLOSE record count u64
//! ```
//!
//! Every tenant gets a fresh data key in every segment (written as a KEY record before its first
//! DATA record), so restarts never reuse a key and a nonce never repeats. The associated data binds
//! segment id, key index and counter.
//!
//! Recovery: damage followed by a valid record is corruption (an acknowledged record may be hurt)
//! and is refused; damage with nothing valid after it is a torn tail of a write that was never
//! acknowledged and is discarded with a warning. A CLOSE record marks a cleanly rotated segment.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tv_crypto::{DataKey, Keyring, WrappedDataKey, fsio};
use tv_model::TenantId;

use crate::{StoreError, now_unix_nanos};

pub const MAGIC: &[u8; 6] = b"TVWAL\0";
/// 2: the DATA plaintext starts with the record secret and receive time (issue 3).
pub const VERSION: u16 = 2;
pub const HEADER_LEN: usize = 32;
const REC_HEADER: usize = 9;
pub const TYPE_KEY: u8 = 1;
pub const TYPE_DATA: u8 = 2;
pub const TYPE_CLOSE: u8 = 3;
/// Upper bound on one record's body, well above any batch the limits admit.
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn data_aad(segment: u64, key_index: u32, counter: u64) -> [u8; 25] {
    let mut a = [0u8; 25];
    a[..5].copy_from_slice(b"tvwal");
    a[5..13].copy_from_slice(&segment.to_le_bytes());
    a[13..17].copy_from_slice(&key_index.to_le_bytes());
    a[17..25].copy_from_slice(&counter.to_le_bytes());
    a
}

pub fn encode_record(out: &mut Vec<u8>, ty: u8, body: &[u8]) {
    let mut crc = crc32c::crc32c(&[ty]);
    crc = crc32c::crc32c_append(crc, body);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(ty);
    out.extend_from_slice(body);
}

fn segment_header(id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..6].copy_from_slice(MAGIC);
    h[6..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h[16..24].copy_from_slice(&now_unix_nanos().to_le_bytes());
    h
}

/// A record recovered from a segment.
#[derive(Debug)]
pub enum Recovered {
    Key {
        tenant: TenantId,
        key_index: u32,
        wrapped: WrappedDataKey,
    },
    Data {
        key_index: u32,
        counter: u64,
        ciphertext: Vec<u8>,
        /// Offset of the record in the segment file.
        offset: u64,
        /// SHA-256 of the record body, as the record's log leaf commits to it.
        body_sha256: [u8; 32],
    },
}

/// What reading one segment found.
#[derive(Debug)]
pub struct RecoveredSegment {
    pub id: u64,
    pub records: Vec<Recovered>,
    pub closed: bool,
    /// Bytes discarded as a torn tail.
    pub torn_bytes: u64,
}

/// Checks one record at `off`; returns (type, body range, next offset) when it is intact.
fn record_at(buf: &[u8], off: usize) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < off + REC_HEADER {
        return None;
    }
    let len = u32::from_le_bytes(buf[off..off + 4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf[off + 4..off + 8].try_into().ok()?);
    let ty = buf[off + 8];
    if !(TYPE_KEY..=TYPE_CLOSE).contains(&ty) || len > MAX_RECORD {
        return None;
    }
    let end = off.checked_add(REC_HEADER)?.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    let body = off + REC_HEADER..end;
    let mut c = crc32c::crc32c(&[ty]);
    c = crc32c::crc32c_append(c, &buf[body.clone()]);
    (c == crc).then_some((ty, body, end))
}

/// Reads and checks a whole segment file.
pub fn read_segment(path: &Path) -> Result<RecoveredSegment, StoreError> {
    let buf = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    parse_segment(&buf, path)
}

/// Checks the bytes of a segment (`path` only names it in messages).
pub fn parse_segment(buf: &[u8], path: &Path) -> Result<RecoveredSegment, StoreError> {
    let corrupt = |offset: usize, reason: &str| StoreError::Corruption {
        path: path.display().to_string(),
        offset: offset as u64,
        reason: reason.to_owned(),
    };
    if buf.len() < HEADER_LEN {
        // A segment whose header never became durable holds no acknowledged record.
        return Ok(RecoveredSegment {
            id: 0,
            records: Vec::new(),
            closed: false,
            torn_bytes: buf.len() as u64,
        });
    }
    if &buf[..6] != MAGIC {
        return Err(corrupt(0, "not a tracevault WAL segment (bad magic)"));
    }
    let version = u16::from_le_bytes([buf[6], buf[7]]);
    if version != VERSION {
        return Err(StoreError::Version {
            what: format!("WAL segment {}", path.display()),
            version: version as u32,
            supported: format!("version {VERSION}"),
        });
    }
    let id = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let mut off = HEADER_LEN;
    let mut records = Vec::new();
    let mut closed = false;
    while off < buf.len() {
        let Some((ty, body, next)) = record_at(buf, off) else {
            // Is anything valid after the damage? Then acknowledged data was hurt.
            let later = (off + 1..buf.len().saturating_sub(REC_HEADER - 1))
                .find(|&o| record_at(buf, o).is_some());
            if let Some(o) = later {
                return Err(corrupt(
                    off,
                    &format!("damaged record followed by a valid record at offset {o}"),
                ));
            }
            if closed {
                return Err(corrupt(off, "bytes after the close record"));
            }
            let torn = (buf.len() - off) as u64;
            tracing::warn!(
                segment = %path.display(),
                offset = off,
                bytes = torn,
                "discarding torn tail of WAL segment (an unacknowledged write cut short)"
            );
            return Ok(RecoveredSegment {
                id,
                records,
                closed,
                torn_bytes: torn,
            });
        };
        if closed {
            return Err(corrupt(off, "record after the close record"));
        }
        let b = &buf[body];
        match ty {
            TYPE_KEY => {
                let tl = *b.first().ok_or_else(|| corrupt(off, "empty key record"))? as usize;
                if b.len() != 1 + tl + 4 + WrappedDataKey::LEN {
                    return Err(corrupt(off, "key record has the wrong length"));
                }
                let tenant = std::str::from_utf8(&b[1..1 + tl])
                    .ok()
                    .and_then(|s| TenantId::parse(s).ok())
                    .ok_or_else(|| corrupt(off, "key record names an invalid tenant"))?;
                let key_index = u32::from_le_bytes(b[1 + tl..5 + tl].try_into().expect("4 bytes"));
                let wrapped = WrappedDataKey::from_bytes(&b[5 + tl..])
                    .ok_or_else(|| corrupt(off, "bad wrapped key"))?;
                records.push(Recovered::Key {
                    tenant,
                    key_index,
                    wrapped,
                });
            }
            TYPE_DATA => {
                if b.len() < 12 + 16 {
                    return Err(corrupt(off, "data record too short"));
                }
                records.push(Recovered::Data {
                    key_index: u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
                    counter: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
                    ciphertext: b[12..].to_vec(),
                    offset: off as u64,
                    body_sha256: tv_tlog::commit::sha256(b),
                });
            }
            _ => closed = true,
        }
        off = next;
    }
    Ok(RecoveredSegment {
        id,
        records,
        closed,
        torn_bytes: 0,
    })
}

/// Called around every fsync; tests use it to prove that no acknowledgement leaves before the
/// fsync covering it has returned.
pub trait SyncHook: Send + Sync {
    fn before_sync(&self) {}
    fn after_sync(&self) {}
}

/// Observes WAL activity (metrics live in the server; the store stays free of them).
pub trait WalObserver: Send + Sync {
    fn fsync(&self, _latency: Duration, _bytes: u64) {}
}

struct TenantKey {
    index: u32,
    key: DataKey,
    commitment: [u8; 32],
    next_counter: u64,
}

/// Where a DATA record went and what its log leaf commits to.
#[derive(Debug, Clone, Copy)]
pub struct DataInfo {
    pub key_index: u32,
    pub counter: u64,
    /// SHA-256 of the record body (key index, counter, ciphertext).
    pub body_sha256: [u8; 32],
    pub key_commitment: [u8; 32],
}

/// SHA-256 of a DATA record body as its log leaf commits to it.
pub fn data_body_digest(key_index: u32, counter: u64, ciphertext: &[u8]) -> [u8; 32] {
    let mut body = Vec::with_capacity(12 + ciphertext.len());
    body.extend_from_slice(&key_index.to_le_bytes());
    body.extend_from_slice(&counter.to_le_bytes());
    body.extend_from_slice(ciphertext);
    tv_tlog::commit::sha256(&body)
}

/// The segment currently appended to.
pub struct ActiveSegment {
    pub id: u64,
    file: File,
    pub len: u64,
    opened: Instant,
    keys: HashMap<TenantId, TenantKey>,
    data_records: u64,
    records: u64,
}

/// A record written and synced, as the head index needs it.
pub struct Written {
    pub segment: u64,
    pub tenant: TenantId,
}

impl ActiveSegment {
    /// Creates a new segment file with its header, durably.
    pub fn create(dir: &Path, id: u64) -> Result<Self, StoreError> {
        let path = segment_path(dir, id);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        file.write_all(&segment_header(id))
            .and_then(|_| file.sync_all())
            .and_then(|_| fsio::sync_dir(dir))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            id,
            file,
            len: HEADER_LEN as u64,
            opened: Instant::now(),
            keys: HashMap::new(),
            data_records: 0,
            records: 0,
        })
    }

    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    pub fn has_data(&self) -> bool {
        self.data_records > 0
    }

    /// Encrypts one payload for `tenant` and appends its record(s) to `buf` (not yet written).
    pub fn encode_data(
        &mut self,
        keyring: &Keyring,
        tenant: &TenantId,
        payload: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<DataInfo, StoreError> {
        if !self.keys.contains_key(tenant) {
            let (key, wrapped) = keyring.new_data_key(tenant).map_err(StoreError::Crypto)?;
            let index = self.keys.len() as u32;
            let mut body = Vec::with_capacity(1 + tenant.as_str().len() + 4 + WrappedDataKey::LEN);
            body.push(tenant.as_str().len() as u8);
            body.extend_from_slice(tenant.as_str().as_bytes());
            body.extend_from_slice(&index.to_le_bytes());
            body.extend_from_slice(&wrapped.to_bytes());
            encode_record(buf, TYPE_KEY, &body);
            self.records += 1;
            self.keys.insert(
                tenant.clone(),
                TenantKey {
                    index,
                    key,
                    commitment: wrapped.commitment,
                    next_counter: 0,
                },
            );
        }
        let tk = self.keys.get_mut(tenant).expect("inserted above");
        let counter = tk.next_counter;
        tk.next_counter += 1;
        let mut sealed = Vec::with_capacity(12 + payload.len() + 16);
        sealed.extend_from_slice(&tk.index.to_le_bytes());
        sealed.extend_from_slice(&counter.to_le_bytes());
        let mut ct = payload.to_vec();
        tk.key
            .seal(counter, &data_aad(self.id, tk.index, counter), &mut ct)
            .map_err(StoreError::Crypto)?;
        sealed.extend_from_slice(&ct);
        let info = DataInfo {
            key_index: tk.index,
            counter,
            body_sha256: tv_tlog::commit::sha256(&sealed),
            key_commitment: tk.commitment,
        };
        encode_record(buf, TYPE_DATA, &sealed);
        self.records += 1;
        self.data_records += 1;
        Ok(info)
    }

    /// Writes `buf` and syncs it. On failure the file is cut back to its previous length so no
    /// partial record stays in the middle of the segment.
    pub fn write_and_sync(
        &mut self,
        buf: &[u8],
        hook: Option<&dyn SyncHook>,
        observer: Option<&dyn WalObserver>,
    ) -> Result<(), std::io::Error> {
        let before = self.len;
        let res = self.file.write_all(buf).and_then(|_| {
            if let Some(h) = hook {
                h.before_sync();
            }
            let t = Instant::now();
            let r = self.file.sync_data();
            if let Some(o) = observer {
                o.fsync(t.elapsed(), buf.len() as u64);
            }
            if let Some(h) = hook {
                h.after_sync();
            }
            r
        });
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(before);
                let _ = std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(before));
                // Forget keys first used in this failed write; their KEY records are gone.
                Err(e)
            }
        }
    }

    /// Drops tenant keys whose KEY record did not make it to disk (after a failed write).
    pub fn forget_keys_after_failure(&mut self, known_before: usize) {
        if self.keys.len() > known_before {
            self.keys.retain(|_, k| (k.index as usize) < known_before);
        }
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Writes the CLOSE record and syncs.
    pub fn close(mut self) -> Result<u64, std::io::Error> {
        let mut buf = Vec::new();
        encode_record(&mut buf, TYPE_CLOSE, &(self.records).to_le_bytes());
        self.file.write_all(&buf)?;
        self.file.sync_all()?;
        Ok(self.id)
    }
}

/// Opens the data keys named by a recovered segment's KEY records.
pub fn open_segment_keys(
    keyring: &Keyring,
    seg: &RecoveredSegment,
) -> Result<HashMap<u32, (TenantId, Arc<DataKey>)>, StoreError> {
    let mut keys = HashMap::new();
    for r in &seg.records {
        if let Recovered::Key {
            tenant,
            key_index,
            wrapped,
        } = r
        {
            if keyring.is_erased(tenant) {
                continue;
            }
            let k = keyring
                .open_data_key(tenant, wrapped)
                .map_err(StoreError::Crypto)?;
            keys.insert(*key_index, (tenant.clone(), Arc::new(k)));
        }
    }
    Ok(keys)
}

/// The key indexes of a segment that belong to erased tenants (their records are skipped).
pub fn erased_key_indexes(
    keyring: &Keyring,
    seg: &RecoveredSegment,
) -> std::collections::HashSet<u32> {
    seg.records
        .iter()
        .filter_map(|r| match r {
            Recovered::Key {
                tenant, key_index, ..
            } if keyring.is_erased(tenant) => Some(*key_index),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_checksum_catches_flips() {
        let mut buf = vec![0u8; HEADER_LEN];
        encode_record(&mut buf, TYPE_DATA, b"0123456789abcdef0123456789abcdef");
        assert!(record_at(&buf, HEADER_LEN).is_some());
        for i in HEADER_LEN..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                record_at(&b, HEADER_LEN).is_none(),
                "flip at {i} undetected"
            );
        }
    }

    #[test]
    fn segment_names_roundtrip() {
        let p = segment_path(Path::new("/x"), 0xabc);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(0xabc));
        assert_eq!(parse_segment_name("zz.wal"), None);
    }
}
