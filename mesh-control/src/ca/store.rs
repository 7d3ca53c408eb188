//! Where the CA material lives: a directory (local mode) or Secrets (Kubernetes), behind
//! one interface of named files.
//!
//! Both hold the same names ([`names`](super::names::ALL)): a directory as files, a Secret as
//! data keys. Reads return a [`Files`] snapshot with a version; changes are a list of
//! `Op`s applied only if the storage still has that version (a directory compares
//! content digests under its lock file, a Secret its `resourceVersion`), so two processes
//! — the server and `mesh-control ca rotate`, or two replicas — never interleave a
//! multi-file change. A lost race is [`Error::Conflict`]: the caller re-reads and decides
//! again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Error, names};
use crate::files::{self, DirLock};

/// A snapshot of the CA files by name, with the storage's version of them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Files {
    map: BTreeMap<String, Vec<u8>>,
    pub(crate) version: String,
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values include private keys.
        f.debug_struct("Files")
            .field("names", &self.map.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish()
    }
}

impl Files {
    /// The content of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.map.get(name).map(Vec::as_slice)
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(crate) fn insert(&mut self, name: &str, data: Vec<u8>) {
        self.map.insert(name.to_owned(), data);
    }

    /// Whether no signing material is present at all (a first start).
    pub(crate) fn is_unset(&self) -> bool {
        ![
            names::ROOT_CERT,
            names::ROOT_KEY,
            names::CA_CERT,
            names::CA_KEY,
        ]
        .iter()
        .any(|n| self.has(n))
    }

    fn digest(&self) -> String {
        let mut all = Vec::new();
        for (k, v) in &self.map {
            all.extend_from_slice(k.as_bytes());
            all.push(0);
            all.extend_from_slice(&(v.len() as u64).to_be_bytes());
            all.extend_from_slice(v);
        }
        super::material::hex(&super::material::sha256(&all))
    }
}

/// One change to the CA files.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create or replace a file.
    Write {
        /// The name.
        name: &'static str,
        /// The content.
        data: Vec<u8>,
    },
    /// Remove a file (absent is fine).
    Remove(&'static str),
    /// Rename a file, replacing the target (absent source is fine).
    Rename {
        /// The old name.
        from: &'static str,
        /// The new name.
        to: &'static str,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { name, data } => write!(f, "write {name} ({} bytes)", data.len()),
            Op::Remove(name) => write!(f, "remove {name}"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
        }
    }
}

/// The file mode of a CA file: keys are secret.
fn mode(name: &str) -> u32 {
    if name.ends_with("key.pem") {
        files::SECRET
    } else {
        files::PUBLIC
    }
}

/// CA material in a local directory (local mode, `ca rotate`, `ca issue`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// The store in `dir`, created `0700` if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        files::create_private_dir(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_unlocked(&self) -> Result<Files, Error> {
        let mut out = Files::default();
        for name in names::ALL {
            if let Some(data) = files::read_opt(&self.dir.join(name))? {
                out.insert(name, data);
            }
        }
        out.version = out.digest();
        Ok(out)
    }

    pub(crate) fn read(&self) -> Result<Files, Error> {
        let _lock = DirLock::acquire(&self.dir)?;
        self.read_unlocked()
    }

    pub(crate) fn apply(&self, version: &str, ops: &[Op]) -> Result<(), Error> {
        let _lock = DirLock::acquire(&self.dir)?;
        if self.read_unlocked()?.version != version {
            return Err(Error::Conflict);
        }
        for op in ops {
            match op {
                Op::Write { name, data } => {
                    files::write_atomic(&self.dir.join(name), data, mode(name))?;
                }
                Op::Remove(name) => files::remove(&self.dir.join(name))?,
                Op::Rename { from, to } => {
                    let from = self.dir.join(from);
                    if from.exists() {
                        files::rename(&from, &self.dir.join(to))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a new root pair unless any signing material exists (then `Conflict`).
    pub(crate) fn create_root(&self, cert_pem: &str, key_pem: &str) -> Result<(), Error> {
        let _lock = DirLock::acquire(&self.dir)?;
        if !self.read_unlocked()?.is_unset() {
            return Err(Error::Conflict);
        }
        // The key first: a crash in between leaves a key without a certificate, which the
        // next start reports (never a certificate whose key was lost).
        files::write_atomic(
            &self.dir.join(names::ROOT_KEY),
            key_pem.as_bytes(),
            files::SECRET,
        )?;
        files::write_atomic(
            &self.dir.join(names::ROOT_CERT),
            cert_pem.as_bytes(),
            files::PUBLIC,
        )?;
        Ok(())
    }

    pub(crate) fn locate(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// The CA's storage.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A directory.
    Local(LocalStore),
    /// Secrets in the control-plane namespace.
    Kube(super::kube::KubeStore),
}

impl Storage {
    /// Reads every CA file.
    pub(crate) async fn read(&self) -> Result<Files, Error> {
        match self {
            Self::Local(s) => s.read(),
            Self::Kube(s) => s.read().await,
        }
    }

    /// Applies `ops` if the storage is still at `files.version`.
    pub(crate) async fn apply(&self, files: &Files, ops: &[Op]) -> Result<(), Error> {
        match self {
            Self::Local(s) => s.apply(&files.version, ops),
            Self::Kube(s) => s.apply(files, ops).await,
        }
    }

    /// Stores a new root unless one exists (`Conflict`: re-read and load it).
    pub(crate) async fn create_root(&self, cert_pem: &str, key_pem: &str) -> Result<(), Error> {
        match self {
            Self::Local(s) => s.create_root(cert_pem, key_pem),
            Self::Kube(s) => s.create_root(cert_pem, key_pem).await,
        }
    }

    /// Where `name` is, for messages.
    pub(crate) fn locate(&self, name: &str) -> String {
        match self {
            Self::Local(s) => s.locate(name),
            Self::Kube(s) => s.locate(name),
        }
    }

    /// `local:<dir>` or `kubernetes:<namespace>/<secret>`.
    pub fn describe(&self, plug_in: bool) -> String {
        match self {
            Self::Local(s) => format!("local:{}", s.dir.display()),
            Self::Kube(s) => s.describe(plug_in),
        }
    }
}
