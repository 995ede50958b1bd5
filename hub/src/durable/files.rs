//! Batched file durability: writers put their bytes in files (no fsync of their own), then ask
//! for them to be made durable and wait. One task serves everyone who asked while the previous
//! round ran (and, after a full round, a millisecond more), so concurrent writers share one
//! round of syncs: on a busy local file system, one `syncfs(2)` covers every file and folder
//! entry written on it; in a quiet round, or on a network share (where `syncfs` may not reach
//! the server), each file named is fsynced and each folder once.
//!
//! A request is answered only by a round that started after the request was made, so it covers
//! every write made before it. The file system is synced through a descriptor kept open from
//! one round to the next, so a write-back error that happened in between is reported to the
//! next round (the kernel reports such errors to descriptors opened before them).

use super::Pacing;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

static SYNCS: AtomicU64 = AtomicU64::new(0);

/// Files and folders named on one file system in a round from which it is synced whole.
const WHOLE_FS_FROM: usize = 4;

/// Writers in a round that show the hub is busy.
const BUSY_ROUND: usize = 8;

/// Counts one fsync, fdatasync, syncfs or database flush made by this process.
pub fn count_sync() {
    SYNCS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("edthub_disk_syncs_total").increment(1);
}

/// The fsync, fdatasync, syncfs and database flush calls this process has made.
pub fn disk_syncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// What one writer needs made durable: files whose data it wrote and folders whose entries it
/// changed, all on one file system.
#[derive(Debug, Default, Clone)]
pub struct Durable {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

impl Durable {
    /// The entries of `dir` (files created, renamed or removed in it).
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            files: Vec::new(),
            dirs: vec![dir.into()],
        }
    }
}

struct Job {
    what: Durable,
    reply: oneshot::Sender<io::Result<()>>,
}

/// The handle writers ask through; cheap to clone.
#[derive(Clone)]
pub struct FileSync {
    tx: mpsc::UnboundedSender<Job>,
    syncs: std::sync::Arc<AtomicU64>,
}

impl FileSync {
    /// Starts the syncing task on the current runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let syncs = std::sync::Arc::new(AtomicU64::new(0));
        let counter = syncs.clone();
        tokio::spawn(async move {
            let mut syncer = Syncer {
                syncs: counter.clone(),
                ..Syncer::default()
            };
            let mut pacing = Pacing::new(BUSY_ROUND);
            while let Some(first) = rx.recv().await {
                pacing.linger().await;
                let mut jobs = vec![first];
                while let Ok(more) = rx.try_recv() {
                    jobs.push(more);
                }
                metrics::histogram!("edthub_file_sync_batch").record(jobs.len() as f64);
                let size = jobs.len();
                let done = tokio::task::spawn_blocking(move || {
                    let results = syncer.round(&jobs);
                    (syncer, jobs, results)
                })
                .await;
                let Ok((back, jobs, results)) = done else {
                    // The round panicked: its writers see their reply dropped (an error).
                    syncer = Syncer {
                        syncs: counter.clone(),
                        ..Syncer::default()
                    };
                    continue;
                };
                syncer = back;
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
                pacing.ended(size);
            }
        });
        Self { tx, syncs }
    }

    /// The syncs this syncer has made.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Waits until what `what` names is on disk.
    pub async fn sync(&self, what: Durable) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        let stopped = || io::Error::other("the file syncer has stopped");
        self.tx.send(Job { what, reply }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The blocking side: one descriptor per local file system, kept open between rounds.
#[derive(Default)]
struct Syncer {
    /// By device: an open folder on it, or `None` where the file system is not synced whole.
    filesystems: HashMap<u64, Option<File>>,
    syncs: std::sync::Arc<AtomicU64>,
}

impl Syncer {
    /// Makes every job's files durable; one result per job. A file system with
    /// [`WHOLE_FS_FROM`] or more files and folders named in the round is synced whole; a
    /// quieter round fsyncs what it names (each folder once), which is quicker where the file
    /// system also holds other programs' unwritten data.
    fn round(&mut self, jobs: &[Job]) -> Vec<io::Result<()>> {
        let syncs = self.syncs.clone();
        let devices: Vec<io::Result<u64>> = jobs.iter().map(|j| device_of(&j.what)).collect();
        let mut named: HashMap<u64, usize> = HashMap::new();
        for (job, dev) in jobs.iter().zip(&devices) {
            if let Ok(dev) = dev {
                *named.entry(*dev).or_default() += job.what.files.len() + job.what.dirs.len();
            }
        }
        let mut whole: HashMap<u64, io::Result<()>> = HashMap::new();
        let mut done: HashMap<PathBuf, io::Result<()>> = HashMap::new();
        let mut results = Vec::with_capacity(jobs.len());
        for (job, dev) in jobs.iter().zip(devices) {
            let dev = match dev {
                Ok(dev) => dev,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let busy = named.get(&dev).copied().unwrap_or(0) >= WHOLE_FS_FROM;
            let result = match self.whole_fs(dev, &job.what).filter(|_| busy) {
                Some(fs) => clone_result(whole.entry(dev).or_insert_with(|| {
                    syncs.fetch_add(1, Ordering::Relaxed);
                    count_sync();
                    syncfs(fs)
                })),
                None => sync_each(&job.what, &syncs, &mut done),
            };
            results.push(result);
        }
        results
    }

    /// The open descriptor to sync `dev` whole through, if its file system may be.
    fn whole_fs(&mut self, dev: u64, what: &Durable) -> Option<&File> {
        self.filesystems
            .entry(dev)
            .or_insert_with(|| {
                let dir = what.dirs.first().or(what.files.first())?;
                let f = File::open(dir).ok()?;
                local_fs(&f).then_some(f)
            })
            .as_ref()
    }
}

fn clone_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

fn device_of(what: &Durable) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = what
        .dirs
        .first()
        .or(what.files.first())
        .ok_or_else(|| io::Error::other("nothing named to sync"))?;
    Ok(std::fs::metadata(path)?.dev())
}

/// fsyncs each file, then each folder, not already synced in this round (writers to one file,
/// such as the payload log, share its sync).
fn sync_each(
    what: &Durable,
    syncs: &AtomicU64,
    done: &mut HashMap<PathBuf, io::Result<()>>,
) -> io::Result<()> {
    let fsync = |p: &PathBuf| {
        syncs.fetch_add(1, Ordering::Relaxed);
        count_sync();
        File::open(p)?.sync_all()
    };
    for p in what.files.iter().chain(&what.dirs) {
        clone_result(done.entry(p.clone()).or_insert_with(|| fsync(p)))?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn syncfs(f: &File) -> io::Result<()> {
    rustix::fs::syncfs(f).map_err(io::Error::from)
}

/// Local file systems whose `syncfs` covers every file's data and every folder entry.
#[cfg(target_os = "linux")]
fn local_fs(f: &File) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const F2FS: i64 = 0xF2F5_2010;
    match rustix::fs::fstatfs(f) {
        Ok(s) => {
            // The field's type differs between architectures.
            #[allow(clippy::unnecessary_cast)]
            let t = s.f_type as i64;
            [EXT4, XFS, BTRFS, TMPFS, F2FS].contains(&t)
        }
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_: &File) -> io::Result<()> {
    unreachable!("whole file systems are synced only on Linux")
}

#[cfg(not(target_os = "linux"))]
fn local_fs(_: &File) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_writers_share_rounds_and_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sync = FileSync::start();
        let mut waits = Vec::new();
        for i in 0..64 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, b"x").unwrap();
            let sync = sync.clone();
            let d = dir.path().to_path_buf();
            waits.push(tokio::spawn(async move {
                sync.sync(Durable {
                    files: vec![p],
                    dirs: vec![d],
                })
                .await
            }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        // On a current-thread runtime every request is queued before the syncer runs: one
        // round for all of them.
        let used = sync.syncs();
        let whole = local_fs(&File::open(dir.path()).unwrap());
        assert_eq!(
            used,
            if whole { 1 } else { 65 },
            "64 files and their folder: one syncfs, or each file and the folder once"
        );
        // A round with little in it syncs what it names: one file and its folder.
        let lone = dir.path().join("lone");
        std::fs::write(&lone, b"x").unwrap();
        sync.sync(Durable {
            files: vec![lone],
            dirs: vec![dir.path().to_path_buf()],
        })
        .await
        .unwrap();
        assert_eq!(sync.syncs() - used, 2);
        // Two writers naming one file (the payload log) in a quiet round: one fsync of it.
        let used = sync.syncs();
        let shared = dir.path().join("shared");
        std::fs::write(&shared, b"x").unwrap();
        let both: Vec<_> = (0..2)
            .map(|_| {
                sync.sync(Durable {
                    files: vec![shared.clone()],
                    dirs: Vec::new(),
                })
            })
            .collect();
        for r in futures::future::join_all(both).await {
            r.unwrap();
        }
        assert_eq!(sync.syncs() - used, 1);
        // Two writers in a round, each with a file and its folder: one sync of the whole
        // file system rather than four.
        let used = sync.syncs();
        let pair: Vec<_> = ["a", "b"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                std::fs::write(&p, b"x").unwrap();
                sync.sync(Durable {
                    files: vec![p],
                    dirs: vec![dir.path().to_path_buf()],
                })
            })
            .collect();
        for r in futures::future::join_all(pair).await {
            r.unwrap();
        }
        assert_eq!(sync.syncs() - used, if whole { 1 } else { 3 });
        let missing = sync
            .sync(Durable::dir(dir.path().join("no-such-folder")))
            .await;
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(
            sync.sync(Durable::default()).await.is_err(),
            "nothing named"
        );
    }
}
