//! Original payloads appended to segment files: `payloads/log/<number>.seg`, where the number
//! is the millisecond the segment was started (so names sort oldest first). Each payload is a
//! 40-byte header (`EDTPAYLD`, the message id, the length, a check) and its bytes; its message
//! record holds where it is ([`PayloadAt`]).
//!
//! One file takes every payload until it holds [`SEGMENT_BYTES`] or a day has turned, so a
//! submission creates no file of its own (creating files is the dearest thing a busy hub does
//! on most file systems), and concurrent submissions share one sync of it. A payload is
//! written in place (never over another) and synced before its message is recorded, as with
//! the files before: a recorded message always has its payload. A process that starts never
//! appends to a segment an earlier one wrote, so what a crash cut short stays at the end of a
//! segment nobody writes again.
//!
//! A purge gives a payload's space back at once by punching a hole where its bytes were (the
//! header stays, so the segment can still be read through); a segment goes when nothing in it
//! is still held ([`PayloadLog::remove`]). Bytes written for a submission that was never
//! recorded are punched when that is known, or go with their segment.

use crate::durable::Durable;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

/// A segment takes payloads until it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const MAGIC: &[u8; 8] = b"EDTPAYLD";
const HEADER: u64 = 40;
const DAY_MS: u64 = 86_400_000;

/// Where a payload's bytes are: its segment and the span after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadAt {
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

/// The segment being written.
struct Active {
    number: u64,
    file: File,
    end: u64,
}

/// What appending changes: the segment being written, and the number the next must exceed.
struct Writing {
    active: Option<Active>,
    last: u64,
}

/// The payload log of one node.
pub struct PayloadLog {
    dir: PathBuf,
    segment_bytes: u64,
    writing: Mutex<Writing>,
}

impl PayloadLog {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// [`PayloadLog::open`] with segments of `segment_bytes` (tests roll them sooner).
    pub fn with_segment_bytes(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let last = segments_in(dir)?.last().copied().unwrap_or(0);
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            writing: Mutex::new(Writing { active: None, last }),
        })
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment}.seg"))
    }

    /// Appends a payload and returns where it is and what must be synced before its message is
    /// recorded (the segment's data; a new segment's folder entry is synced here).
    pub fn append(&self, id: &Uuid, bytes: &[u8]) -> io::Result<(PayloadAt, Durable)> {
        let now = crate::track::now_ms();
        let mut w = self.writing.lock().expect("payload log lock");
        let stale = |a: &Active| a.end >= self.segment_bytes || a.number / DAY_MS != now / DAY_MS;
        if w.active.as_ref().is_none_or(stale) {
            let started = self.start(now.max(w.last + 1))?;
            w.last = started.number;
            w.active = Some(started);
        }
        let a = w.active.as_mut().expect("a segment");
        let len = bytes.len() as u64;
        let at = PayloadAt {
            segment: a.number,
            offset: a.end + HEADER,
            len,
        };
        let written = a
            .file
            .write_all_at(&header(id, len), a.end)
            .and_then(|()| a.file.write_all_at(bytes, at.offset));
        if let Err(e) = written {
            // What follows a broken record could not be read through: start afresh.
            w.active = None;
            return Err(e);
        }
        a.end = at.offset + len;
        let path = self.path(a.number);
        Ok((
            at,
            Durable {
                files: vec![path],
                dirs: Vec::new(),
            },
        ))
    }

    /// Starts segment `number`, with its folder entry on disk.
    fn start(&self, number: u64) -> io::Result<Active> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(number))?;
        crate::durable::count_sync();
        File::open(&self.dir)?.sync_all()?;
        Ok(Active {
            number,
            file,
            end: 0,
        })
    }

    /// A payload's bytes, or `None` if its segment is gone.
    pub fn read(&self, at: PayloadAt) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.open_segment(at.segment, false)? else {
            return Ok(None);
        };
        let len = usize::try_from(at.len).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, at.offset)?;
        Ok(Some(bytes))
    }

    /// Gives a payload's space back (where the file system can punch holes; elsewhere it
    /// comes back with its segment). Its bytes read as zeros afterwards.
    pub fn release(&self, at: PayloadAt) -> io::Result<()> {
        match self.open_segment(at.segment, true)? {
            Some(file) => punch(&file, at.offset, at.len),
            None => Ok(()),
        }
    }

    /// A segment opened to read (or write), or `None` if it is gone.
    fn open_segment(&self, segment: u64, write: bool) -> io::Result<Option<File>> {
        match fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(self.path(segment))
        {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Segments started before `before_ms`, oldest first.
    pub fn segments(&self, before_ms: u64) -> io::Result<Vec<u64>> {
        Ok(segments_in(&self.dir)?
            .into_iter()
            .filter(|n| *n < before_ms)
            .collect())
    }

    /// The payloads written to a segment, in order, as far as it reads through (a crash can
    /// leave the end of one cut short).
    pub fn payloads(&self, segment: u64) -> io::Result<Vec<(Uuid, PayloadAt)>> {
        let Some(file) = self.open_segment(segment, false)? else {
            return Ok(Vec::new());
        };
        let size = file.metadata()?.len();
        let mut out = Vec::new();
        let mut at = 0;
        let mut h = [0u8; HEADER as usize];
        while at + HEADER <= size {
            file.read_exact_at(&mut h, at)?;
            let Some((id, len)) = read_header(&h) else {
                break;
            };
            let offset = at + HEADER;
            if offset.checked_add(len).is_none_or(|end| end > size) {
                break;
            }
            out.push((
                id,
                PayloadAt {
                    segment,
                    offset,
                    len,
                },
            ));
            at = offset + len;
        }
        Ok(out)
    }

    /// Removes a segment that takes no more payloads; returns the bytes it still held on disk,
    /// or `None` if it is the segment being written (one started on an earlier day is not: the
    /// next payload starts a segment anyway).
    pub fn remove(&self, segment: u64) -> io::Result<Option<u64>> {
        let today = crate::track::now_ms() / DAY_MS;
        let mut w = self.writing.lock().expect("payload log lock");
        if w.active.as_ref().is_some_and(|a| a.number == segment) {
            if segment / DAY_MS == today {
                return Ok(None);
            }
            w.active = None;
        }
        drop(w);
        let path = self.path(segment);
        let held = match fs::metadata(&path) {
            Ok(m) => allocated(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(0)),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        Ok(Some(held))
    }

    /// The bytes the segments hold on disk (holes left out).
    #[cfg(test)]
    fn disk_bytes(&self) -> io::Result<u64> {
        let mut total = 0;
        for n in segments_in(&self.dir)? {
            if let Ok(m) = fs::metadata(self.path(n)) {
                total += allocated(&m);
            }
        }
        Ok(total)
    }
}

fn segments_in(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn check(id: &Uuid, len: u64) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(id.as_bytes());
    h.update(len.to_be_bytes());
    h.finalize()[..8].try_into().expect("8 bytes")
}

fn header(id: &Uuid, len: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..24].copy_from_slice(id.as_bytes());
    h[24..32].copy_from_slice(&len.to_be_bytes());
    h[32..].copy_from_slice(&check(id, len));
    h
}

fn read_header(h: &[u8; HEADER as usize]) -> Option<(Uuid, u64)> {
    if &h[..8] != MAGIC {
        return None;
    }
    let id = Uuid::from_slice(&h[8..24]).ok()?;
    let len = u64::from_be_bytes(h[24..32].try_into().ok()?);
    (h[32..] == check(&id, len)).then_some((id, len))
}

fn allocated(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks() * 512
}

#[cfg(target_os = "linux")]
fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn punch(_: &File, _: u64, _: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_append_read_back_roll_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::with_segment_bytes(dir.path(), 50_000).unwrap();
        let big = vec![7u8; 60_000];
        let ids: Vec<Uuid> = (0..3).map(|_| crate::track::new_id()).collect();
        let (a, _) = log.append(&ids[0], b"first").unwrap();
        let (b, d) = log.append(&ids[1], &big).unwrap();
        assert_eq!(d.files, vec![dir.path().join(format!("{}.seg", a.segment))]);
        assert_eq!((a.segment, a.offset, b.offset), (b.segment, 40, 85));
        let (c, _) = log.append(&ids[2], &big).unwrap();
        assert!(c.segment > b.segment, "a full segment rolls");
        assert_eq!(log.read(a).unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(log.read(c).unwrap(), Some(big.clone()));
        assert_eq!(
            log.payloads(a.segment).unwrap(),
            vec![(ids[0], a), (ids[1], b)]
        );
        assert_eq!(log.segments(u64::MAX).unwrap(), vec![a.segment, c.segment]);
        assert_eq!(log.segments(c.segment).unwrap(), vec![a.segment]);
        assert_eq!(
            log.remove(c.segment).unwrap(),
            None,
            "the segment being written"
        );

        // A released payload reads as zeros; the segment still reads through. Its whole
        // blocks are given back (the partial ones at each end are zeroed).
        let before = log.disk_bytes().unwrap();
        log.release(b).unwrap();
        assert_eq!(log.read(b).unwrap(), Some(vec![0; big.len()]));
        assert_eq!(log.payloads(a.segment).unwrap().len(), 2);
        assert!(
            before - log.disk_bytes().unwrap() >= big.len() as u64 - 2 * 4096,
            "the space comes back at once: {before} then {}",
            log.disk_bytes().unwrap()
        );
        assert!(log.remove(a.segment).unwrap().unwrap() > 0);
        assert_eq!(log.read(a).unwrap(), None);
        assert!(log.payloads(a.segment).unwrap().is_empty());

        // A new process starts a segment of its own, after every other.
        drop(log);
        let log = PayloadLog::with_segment_bytes(dir.path(), 50_000).unwrap();
        let (e, _) = log.append(&crate::track::new_id(), b"e").unwrap();
        assert!(e.segment > c.segment);
        assert!(
            log.remove(c.segment).unwrap().is_some(),
            "written by another process"
        );
    }

    #[test]
    fn a_segment_cut_short_reads_up_to_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| crate::track::new_id()).collect();
        let ats: Vec<PayloadAt> = ids
            .iter()
            .map(|id| log.append(id, &[1u8; 1000]).unwrap().0)
            .collect();
        let path = dir.path().join(format!("{}.seg", ats[0].segment));
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        // The last payload cut short, then a header damaged in the middle.
        f.set_len(ats[2].offset + 10).unwrap();
        assert_eq!(log.payloads(ats[0].segment).unwrap().len(), 2);
        f.write_all_at(b"x", ats[1].offset - 8).unwrap();
        assert_eq!(
            log.payloads(ats[0].segment).unwrap(),
            vec![(ids[0], ats[0])]
        );
    }
}
