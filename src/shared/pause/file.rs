//! The paused destinations in a file beside the embedded store's: read, written whole and
//! renamed into place, under a lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{PauseError, Paused};

/// An exclusive lock on `{path}.lock`, held by the file it returns until it is dropped: two
/// writers (two commands, the console and a command) read, change and write one after the
/// other, and neither undoes the other's change.
pub(super) fn lock_file(path: &std::path::Path) -> Result<std::fs::File, PauseError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(name))
        .map_err(|source| PauseError::File {
            path: path.to_owned(),
            source,
        })?;
    f.lock().map_err(|source| PauseError::File {
        path: path.to_owned(),
        source,
    })?;
    Ok(f)
}

/// The most the file may hold: a name and who paused it, for every destination, is far less.
const MAX_FILE_BYTES: u64 = 1 << 20;

pub(super) fn read_file(path: &std::path::Path) -> Result<BTreeMap<String, Paused>, PauseError> {
    use std::io::Read as _;
    let read = std::fs::File::open(path).and_then(|f| {
        let mut bytes = Vec::new();
        f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            let why = format!("larger than {MAX_FILE_BYTES} bytes");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
        Ok(bytes)
    });
    match read {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PauseError::Malformed {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(PauseError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Written to a file of its own and renamed over the old one: a reader sees the old state or
/// the new, never half of one.
pub(super) fn write_file(
    path: &std::path::Path,
    all: &BTreeMap<String, Paused>,
) -> Result<(), PauseError> {
    let err = |source| PauseError::File {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Its own name for each writer (a process may write from several requests at once).
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let text = serde_json::to_vec_pretty(all).expect("the paused destinations serialize");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()
    });
    let moved = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = moved {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename itself survives a crash once the directory is on disk.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
