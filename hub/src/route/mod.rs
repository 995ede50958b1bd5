//! The hub's side of routing: loading the directory file, holding the directory in use, and
//! turning routing decisions into deliveries. The decisions themselves are `edt_routers`.

use edt_routers::{Directory, DirectoryError, Endpoint, EndpointKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A loaded directory and where its relative paths are anchored.
#[derive(Debug)]
pub struct Loaded {
    pub directory: Directory,
    pub file: PathBuf,
    base: PathBuf,
}

impl Loaded {
    /// The folder of a file endpoint, resolved against the directory file's folder.
    pub fn folder(&self, endpoint: &Endpoint) -> PathBuf {
        match &endpoint.kind {
            EndpointKind::File { path } => {
                let p = Path::new(path);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.base.join(p)
                }
            }
        }
    }
}

/// The directory in use; replaced whole, never edited in place.
pub struct DirectoryHandle {
    current: RwLock<Arc<Loaded>>,
}

impl DirectoryHandle {
    /// Loads `file`.
    pub fn load(file: &Path) -> Result<Self, DirectoryError> {
        Ok(Self {
            current: RwLock::new(Arc::new(load(file)?)),
        })
    }

    pub fn get(&self) -> Arc<Loaded> {
        self.current.read().expect("directory lock").clone()
    }

    /// Loads the file again; on any error the directory in use stays.
    pub fn reload(&self) -> Result<Arc<Loaded>, DirectoryError> {
        let file = self.get().file.clone();
        let fresh = Arc::new(load(&file)?);
        *self.current.write().expect("directory lock") = fresh.clone();
        Ok(fresh)
    }
}

fn load(file: &Path) -> Result<Loaded, DirectoryError> {
    let directory = Directory::load(file)?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Loaded {
        directory,
        file: file.to_path_buf(),
        base,
    })
}

/// Sample practices for a first run.
pub const SAMPLE_PRACTICES: [(&str, &str); 5] = [
    ("A81001", "The Densham Surgery"),
    ("A81002", "Queens Park Medical Centre"),
    ("A81003", "Victoria Medical Practice"),
    ("A81004", "Acklam Medical Centre"),
    ("A81005", "Springwood Surgery"),
];

/// Writes a sample directory (one trust sender, five practices, a drop folder each) to `file`
/// unless it exists, and creates the drop folders. Returns whether it wrote one.
pub fn write_sample(file: &Path) -> std::io::Result<bool> {
    if file.exists() {
        return Ok(false);
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let mut s = String::from(
        "# Sample directory written by `edthub serve` on first run. Edit it, or point\n\
         # `directory` in the config at your own. Relative paths are under this file's folder.\n\n\
         [senders.RX1]\nname = \"Sample Acute Trust\"\n\n\
         [senders.R1K]\nname = \"Sample Hospitals NHS Trust\"\n\n",
    );
    for (ods, name) in SAMPLE_PRACTICES {
        s.push_str(&format!(
            "[endpoints.{lower}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"\n\n\
             [organisations.{ods}]\nname = \"{name}\"\nendpoint = \"{lower}-drop\"\n\n",
            lower = ods.to_ascii_lowercase()
        ));
        std::fs::create_dir_all(base.join("drop").join(ods).join("acks"))?;
    }
    std::fs::create_dir_all(base)?;
    std::fs::write(file, s)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_loads_and_resolves_relative_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("directory.toml");
        assert!(write_sample(&file).unwrap());
        assert!(
            !write_sample(&file).unwrap(),
            "an existing file is left alone"
        );
        let h = DirectoryHandle::load(&file).unwrap();
        let loaded = h.get();
        let ep = loaded.directory.endpoint("a81001-drop").unwrap();
        assert_eq!(loaded.folder(ep), dir.path().join("drop/A81001"));
        assert!(loaded.folder(ep).join("acks").is_dir());
        assert!(loaded.directory.sender("RX1").is_some());
    }

    #[test]
    fn a_bad_reload_keeps_the_old_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("directory.toml");
        write_sample(&file).unwrap();
        let h = DirectoryHandle::load(&file).unwrap();
        std::fs::write(&file, "[organisations.A81001]\nendpoint = \"missing\"\n").unwrap();
        let err = h.reload().unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        assert!(h.get().directory.organisation("A81005").is_some());
    }
}
