//! The hub's side of routing: loading the directory files, holding the directory in use,
//! reloading it (on request and when a file changes) without ever replacing a good directory
//! with a bad one. The decisions themselves are `edt_routers`.

pub mod plan;

use edt_routers::{Directory, DirectoryError, Endpoint, EndpointKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// A loaded directory and where its relative paths are anchored.
#[derive(Debug)]
pub struct Loaded {
    pub directory: Directory,
    pub file: PathBuf,
    base: PathBuf,
    /// Modification times of every file it was built from, when loaded.
    stamps: Vec<Option<SystemTime>>,
}

impl Loaded {
    /// The folder of a file endpoint, resolved against the directory file's folder; `None`
    /// for endpoints that are not folders.
    pub fn folder(&self, endpoint: &Endpoint) -> Option<PathBuf> {
        match &endpoint.kind {
            EndpointKind::File { path } => {
                let p = Path::new(path);
                Some(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.base.join(p)
                })
            }
            EndpointKind::Email { .. }
            | EndpointKind::Mesh { .. }
            | EndpointKind::Grpc { .. }
            | EndpointKind::Mllp { .. } => None,
        }
    }

    fn changed_on_disk(&self) -> bool {
        stamps(self.directory.files()) != self.stamps
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// The directory in use; replaced whole, never edited in place.
pub struct DirectoryHandle {
    current: RwLock<Arc<Loaded>>,
    last_error: Mutex<Option<String>>,
}

impl DirectoryHandle {
    /// Loads `file` and the files it names.
    pub fn load(file: &Path) -> Result<Self, DirectoryError> {
        Ok(Self {
            current: RwLock::new(Arc::new(load(file)?)),
            last_error: Mutex::new(None),
        })
    }

    pub fn get(&self) -> Arc<Loaded> {
        self.current.read().expect("directory lock").clone()
    }

    /// Loads the files again; on any error the directory in use stays and the error is kept
    /// for [`DirectoryHandle::last_error`].
    pub fn reload(&self) -> Result<Arc<Loaded>, DirectoryError> {
        let file = self.get().file.clone();
        match load(&file) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.current.write().expect("directory lock") = fresh.clone();
                *self.last_error.lock().expect("error lock") = None;
                metrics::counter!("edthub_directory_reloads_total", "outcome" => "loaded")
                    .increment(1);
                tracing::info!(
                    organisations = fresh.directory.organisation_count(),
                    rules = fresh.directory.rules().len(),
                    "directory reloaded"
                );
                Ok(fresh)
            }
            Err(e) => {
                *self.last_error.lock().expect("error lock") = Some(e.to_string());
                metrics::counter!("edthub_directory_reloads_total", "outcome" => "refused")
                    .increment(1);
                tracing::error!(error = %e, "directory reload refused; the previous directory stays in use");
                Err(e)
            }
        }
    }

    /// Why the last reload was refused, if it was.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("error lock").clone()
    }

    /// Reloads when any of the directory's files changes, checking every `every`.
    pub fn spawn_watcher(
        self: Arc<Self>,
        every: Duration,
        shutdown: crate::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let mut every = crate::shutdown::Every::new(every, shutdown);
        tokio::spawn(async move {
            let mut refused_stamps = None;
            while every.tick().await {
                let loaded = self.get();
                if !loaded.changed_on_disk() {
                    continue;
                }
                // Do not retry a refused version until it changes again.
                let now = stamps(loaded.directory.files());
                if refused_stamps.as_ref() == Some(&now) {
                    continue;
                }
                let me = self.clone();
                let result = tokio::task::spawn_blocking(move || me.reload().map(|_| ())).await;
                refused_stamps = match result {
                    Ok(Ok(())) => None,
                    _ => Some(now),
                };
            }
        })
    }
}

fn load(file: &Path) -> Result<Loaded, DirectoryError> {
    let directory = Directory::load(file)?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let stamps = stamps(directory.files());
    Ok(Loaded {
        directory,
        file: file.to_path_buf(),
        base,
        stamps,
    })
}

/// Today as `YYYYMMDD` (UTC), for successors that take effect on a date.
pub fn today() -> u32 {
    let d = time::OffsetDateTime::now_utc().date();
    d.year() as u32 * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day())
}

/// Practices with their own drop folder in the sample directory.
pub const SAMPLE_PRACTICES: [&str; 5] = ["A81001", "A81002", "A81004", "A81005", "A81006"];

const EPRACCUR: &[u8] = include_bytes!("../../../deploy/ods/epraccur.csv");
const SUPPLIERS: &[u8] = include_bytes!("../../../deploy/ods/ods-to-supplier.csv");

/// Writes a sample directory unless `file` exists: the national GP practice file and supplier
/// map, one trust sender, a drop folder each for five practices and one shared folder for every
/// other active practice. Returns whether it wrote one.
pub fn write_sample(file: &Path) -> std::io::Result<bool> {
    if file.exists() {
        return Ok(false);
    }
    let base = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(base)?;
    std::fs::write(base.join("epraccur.csv"), EPRACCUR)?;
    std::fs::write(base.join("ods-to-supplier.csv"), SUPPLIERS)?;
    let mut s = String::from(
        "# Sample directory written by `edthub serve` on first run. Edit it (the hub reloads it\n\
         # when it changes), or point `directory` in the config at your own. Relative paths are\n\
         # under this file's folder. See deploy/directory.example.toml for every setting.\n\n\
         practices = \"epraccur.csv\"\nsuppliers = \"ods-to-supplier.csv\"\n\
         # successors = \"successors.csv\"   # old code, new code, effective date\n\n\
         [senders.RX1]\nname = \"Sample Acute Trust\"\n\n\
         [senders.R1K]\nname = \"Sample Hospitals NHS Trust\"\n\n\
         [unknown_gp]\nhold = \"the patient's GP is not known: trace with PDS and route by hand\"\n\n\
         [endpoints.other-practices]\nkind = \"file\"\npath = \"drop/other-practices\"\n\n",
    );
    for ods in SAMPLE_PRACTICES {
        s.push_str(&format!(
            "[endpoints.{lower}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"\n\n\
             [[rules]]\nname = \"{ods} drop folder\"\nods = \"{ods}\"\nendpoint = \"{lower}-drop\"\n\n",
            lower = ods.to_ascii_lowercase()
        ));
        std::fs::create_dir_all(base.join("drop").join(ods).join("acks"))?;
    }
    s.push_str("[[rules]]\nname = \"every other practice\"\nendpoint = \"other-practices\"\n");
    std::fs::create_dir_all(base.join("drop/other-practices/acks"))?;
    std::fs::write(file, s)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_loads_the_national_file_and_resolves_relative_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("directory.toml");
        assert!(write_sample(&file).unwrap());
        assert!(
            !write_sample(&file).unwrap(),
            "an existing file is left alone"
        );
        let h = DirectoryHandle::load(&file).unwrap();
        let loaded = h.get();
        assert_eq!(loaded.directory.organisation_count(), 14_303);
        let ep = loaded.directory.endpoint("a81001-drop").unwrap();
        assert_eq!(loaded.folder(ep), Some(dir.path().join("drop/A81001")));
        assert!(loaded.folder(ep).unwrap().join("acks").is_dir());
        assert!(loaded.directory.sender("RX1").is_some());
        assert_eq!(loaded.directory.files().len(), 3);
    }

    #[test]
    fn a_bad_reload_keeps_the_old_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("directory.toml");
        write_sample(&file).unwrap();
        let h = DirectoryHandle::load(&file).unwrap();
        std::fs::write(dir.path().join("epraccur.csv"), "\"A81001\",\"broken\"\n").unwrap();
        let err = h.reload().unwrap_err().to_string();
        assert!(err.contains("epraccur.csv line 1"), "{err}");
        assert_eq!(h.get().directory.organisation_count(), 14_303);
        assert!(h.last_error().unwrap().contains("27 columns"));
    }

    #[test]
    fn today_is_a_date() {
        let t = today();
        assert!(t > 20_200_101 && t < 21_000_101, "{t}");
    }
}
