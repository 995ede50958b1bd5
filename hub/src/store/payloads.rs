//! Original payloads as files beside the database: `payloads/<day>/<message id>`, where `<day>`
//! is the day (since 1970) the message id was minted, so the oldest payloads sit together.
//!
//! Files keep the database small (sled's memory grows with every record it holds) and let a
//! purge give disk space back at once. A payload is written and synced (with its folder, in one
//! round with concurrent submissions) before the transaction that records its message, since
//! the database's own pages can reach the disk at any time after that: a recorded message
//! always has its payload. A file whose
//! message was never recorded (the process died in between, or it was a duplicate) is an
//! orphan; [`PayloadFiles::candidates`] reports it and the purge removes it.

use super::keys::id_ms;
use crate::durable::Durable;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

const DAY_MS: u64 = 86_400_000;

/// The payload folder of one node.
pub struct PayloadFiles {
    dir: PathBuf,
}

impl PayloadFiles {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn day_dir(&self, day: u64) -> PathBuf {
        self.dir.join(day.to_string())
    }

    fn path(&self, id: &Uuid) -> PathBuf {
        self.day_dir(id_ms(id) / DAY_MS)
            .join(id.simple().to_string())
    }

    /// Writes a new payload (never over an existing one) and returns what must be synced to
    /// make it durable: the file's data and its folder's entry for it (and a new day folder's
    /// entry in the root). The caller syncs it (with others' writes, see
    /// [`crate::durable::FileSync`]) before recording the message.
    pub fn write(&self, id: &Uuid, bytes: &[u8]) -> io::Result<Durable> {
        let path = self.path(id);
        let day = path.parent().expect("a day folder").to_path_buf();
        let mut dirs = vec![day.clone()];
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let mut f = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&day)?;
                dirs.push(self.dir.clone());
                open()?
            }
            other => other?,
        };
        f.write_all(bytes).inspect_err(|_| {
            // Nothing half-written is left behind (a full disk, say).
            let _ = fs::remove_file(&path);
        })?;
        Ok(Durable {
            files: vec![path],
            dirs,
        })
    }

    /// The payload, or `None` if it was never written or has been purged.
    pub fn read(&self, id: &Uuid) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(id)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The payload's size, or `None` if there is none.
    pub fn size(&self, id: &Uuid) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(id)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a payload; returns the bytes freed (`None` if there was none).
    pub fn remove(&self, id: &Uuid) -> io::Result<Option<u64>> {
        let Some(len) = self.size(id)? else {
            return Ok(None);
        };
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ids of payloads minted before `before_ms` and after `after` (paging), oldest first, at
    /// most `limit`; empty day folders found on the way are removed.
    pub fn candidates(
        &self,
        before_ms: u64,
        after: Option<Uuid>,
        limit: usize,
    ) -> io::Result<Vec<Uuid>> {
        let first_day = after.map_or(0, |a| id_ms(&a) / DAY_MS);
        let mut days: Vec<u64> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|d| d * DAY_MS < before_ms && *d >= first_day)
            .collect();
        days.sort_unstable();
        let mut out = Vec::new();
        for day in days {
            let mut ids: Vec<Uuid> = fs::read_dir(self.day_dir(day))?
                .filter_map(|e| Uuid::try_parse(e.ok()?.file_name().to_str()?).ok())
                .filter(|id| id_ms(id) < before_ms && after.is_none_or(|a| *id > a))
                .collect();
            if ids.is_empty() {
                // Gone already if a write raced in: then it is not empty and stays.
                let _ = fs::remove_dir(self.day_dir(day));
                continue;
            }
            ids.sort_unstable();
            for id in ids {
                out.push(id);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove_and_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let p = PayloadFiles::open(dir.path()).unwrap();
        let old = crate::track::new_id();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let cut = crate::track::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let new = crate::track::new_id();
        p.write(&old, b"old").unwrap();
        p.write(&new, b"new").unwrap();
        assert!(p.write(&old, b"again").is_err(), "never overwritten");
        assert_eq!(p.read(&old).unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(p.candidates(cut, None, 10).unwrap(), vec![old]);
        assert_eq!(p.candidates(u64::MAX, None, 1).unwrap(), vec![old]);
        assert_eq!(p.candidates(u64::MAX, Some(old), 5).unwrap(), vec![new]);
        assert!(p.candidates(u64::MAX, Some(new), 5).unwrap().is_empty());
        assert_eq!(p.remove(&old).unwrap(), Some(3));
        assert_eq!(p.remove(&old).unwrap(), None);
        assert_eq!(p.read(&old).unwrap(), None);
        assert_eq!(p.candidates(u64::MAX, None, 10).unwrap(), vec![new]);
        p.remove(&new).unwrap();
        assert!(p.candidates(u64::MAX, None, 10).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "empty day folders are removed"
        );
    }
}
