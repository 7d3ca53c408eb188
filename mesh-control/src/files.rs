//! Files that hold secrets or that other processes read while they change: the CA's keys
//! and roots, local-mode tokens, the trust bundle proxies bootstrap from.
//!
//! Every write is atomic — a temporary file in the same directory, its mode set before any
//! data is written, synced, then renamed over the target — so a reader sees the old or the
//! new content, never half of it, and a key is never readable by others even for an
//! instant. Directories are created `0700`. [`DirLock`] serializes the few multi-file
//! changes (creating a root pair, a rotation step) between processes sharing a directory
//! (the server, `mesh-control ca rotate`, `mesh-control ca issue`).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of private keys and tokens.
pub const SECRET: u32 = 0o600;
/// Mode of certificates and bundles.
pub const PUBLIC: u32 = 0o644;

/// Why a file operation failed: the path and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct Error {
    /// What was being done (`write`, `create directory`...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode `0700`. An existing directory is left as
/// it is; a warning is logged when others can read it.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err("create directory", dir))?;
    let meta = std::fs::metadata(dir).map_err(err("inspect", dir))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "directory holding mesh secrets is accessible to other users; run `chmod 700` on it"
        );
    }
    Ok(())
}

/// Writes `data` to a new temporary file next to `path` with exactly `mode`, synced to
/// disk; returns its path. `suffix` tells the temporary files of different callers apart.
fn write_temp(path: &Path, suffix: &str, data: &[u8], mode: u32) -> Result<PathBuf, Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.{suffix}", fastrand::u64(..)));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        // The umask may have narrowed the mode; never widened it. Set it exactly before
        // any data is written.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(err("chmod", &tmp))?;
        f.write_all(data).map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("sync", &tmp))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Replaces `path` with `data` atomically, the new file having `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = write_temp(path, "tmp", data, mode)?;
    let result = std::fs::rename(&tmp, path).map_err(err("rename into place", path));
    match result {
        Ok(()) => {
            sync_dir(path.parent().unwrap_or(Path::new(".")));
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates `path` with `data` and `mode` unless it exists; returns whether it created it.
/// Atomic and race-free: the content is written to a temporary file that is then
/// hard-linked to `path`, which fails if another process got there first.
pub fn create_new_atomic(path: &Path, data: &[u8], mode: u32) -> Result<bool, Error> {
    let tmp = write_temp(path, "new", data, mode)?;
    let result = match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            sync_dir(path.parent().unwrap_or(Path::new(".")));
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(err("link into place", path)(e)),
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Renames `from` to `to` (replacing it) and syncs the directory.
pub fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::rename(from, to).map_err(err("rename", from))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Removes `path`; a missing file is not an error.
pub fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("remove", path)(e)),
    }
}

/// Reads `path`; `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("read", path)(e)),
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable across a power loss.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// An exclusive advisory lock on `<dir>/.lock`, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Waits for the lock of `dir` (which must exist).
    pub fn acquire(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(SECRET)
            .open(&path)
            .map_err(err("open lock file", &path))?;
        file.lock().map_err(err("lock", &path))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_set_the_mode_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        write_atomic(&key, b"one", SECRET).unwrap();
        write_atomic(&key, b"two", SECRET).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cert = dir.path().join("cert.pem");
        write_atomic(&cert, b"c", PUBLIC).unwrap();
        let mode = std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn create_new_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t");
        assert!(create_new_atomic(&token, b"first", SECRET).unwrap());
        assert!(!create_new_atomic(&token, b"second", SECRET).unwrap());
        assert_eq!(std::fs::read(&token).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dirs_are_0700() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
