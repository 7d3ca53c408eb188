//! `cargo xtask codegen [--check]`: generated code that is committed to the repository.
//!
//! Each generator returns a [`Generated`]: the files it produces (paths relative to the
//! workspace root, with their bytes) and the directories it owns. `codegen` writes them and
//! deletes files in the owned directories that no generator produced; `codegen --check`
//! renders them into a temporary directory and compares byte for byte with the working
//! tree, failing on any file that differs, is missing, or is extra. Normal builds never run
//! codegen.
//!
//! Generators: [`proto`] (the gRPC API, `mesh-api/src/proto/gen/`) and [`crds`] (the CRD
//! manifests, `deploy/crds/`, from `mesh_api::config::crd_definitions`).

use std::{
    collections::BTreeSet,
    fmt, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

mod crds;
mod proto;

/// Arguments of `cargo xtask codegen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Do not write anything; fail if the committed files differ from fresh output.
    #[arg(long)]
    pub(crate) check: bool,
}

/// Runs `cargo xtask codegen` (`check`: compare instead of writing).
pub(crate) fn run(root: &Path, check_only: bool) -> Result<()> {
    let root = root.to_path_buf();
    let generated = generate_all(&root)?;
    if check_only {
        let stale = check(&generated, &root)?;
        if !stale.is_empty() {
            for s in &stale {
                eprintln!("stale: {s}");
            }
            bail!(
                "{} generated file(s) are stale; run `cargo xtask codegen` and commit the result",
                stale.len()
            );
        }
        eprintln!(
            "codegen: {} generated files are up to date",
            generated.files.len()
        );
    } else {
        let changed = generated.write_to(&root)?;
        eprintln!(
            "codegen: {} files generated, {changed} written or removed",
            generated.files.len()
        );
    }
    Ok(())
}

/// Runs every registered generator.
fn generate_all(root: &Path) -> Result<Generated> {
    let mut all = proto::generate(root).context("generating protobuf code")?;
    all.extend(crds::render(&mesh_api::config::crd_definitions())?);
    all.sort();
    Ok(all)
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Generated files and the directories their generators own.
#[derive(Debug, Default)]
pub(crate) struct Generated {
    /// The files, with paths relative to the workspace root.
    files: Vec<File>,
    /// Directories (relative to the root) whose every file must be generated.
    owned_dirs: Vec<PathBuf>,
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct File {
    path: PathBuf,
    contents: Vec<u8>,
}

/// A committed file that does not match fresh output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stale {
    path: PathBuf,
    kind: StaleKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StaleKind {
    /// Generated, but its committed contents differ.
    Differs,
    /// Generated, but not committed.
    Missing,
    /// Committed in an owned directory, but no longer generated.
    Extra,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StaleKind::Differs => "differs from generated output",
            StaleKind::Missing => "is missing",
            StaleKind::Extra => "is not generated anymore",
        };
        write!(f, "{} {what}", self.path.display())
    }
}

// === impl Generated ===

impl Generated {
    /// Adds a directory this generator owns.
    fn own_dir(&mut self, dir: impl Into<PathBuf>) {
        self.owned_dirs.push(dir.into());
    }

    /// Adds a file.
    fn add(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) {
        self.files.push(File {
            path: path.into(),
            contents: contents.into(),
        });
    }

    /// Merges another generator's output.
    fn extend(&mut self, other: Self) {
        self.files.extend(other.files);
        self.owned_dirs.extend(other.owned_dirs);
    }

    /// Sorts files and directories, for deterministic output and messages.
    fn sort(&mut self) {
        self.files.sort();
        self.owned_dirs.sort();
        self.owned_dirs.dedup();
    }

    /// Writes the files under `root`, deleting other files in owned directories. Files
    /// whose contents are unchanged are not touched (keeping their mtimes). Returns how
    /// many files were written or deleted.
    fn write_to(&self, root: &Path) -> Result<usize> {
        let wanted: BTreeSet<&Path> = self.files.iter().map(|f| f.path.as_path()).collect();
        let mut changed = 0;
        for dir in &self.owned_dirs {
            for path in list_files(root, dir)? {
                if !wanted.contains(path.as_path()) {
                    fs::remove_file(root.join(&path))
                        .with_context(|| format!("removing {}", path.display()))?;
                    changed += 1;
                }
            }
        }
        for file in &self.files {
            let dest = root.join(&file.path);
            if fs::read(&dest).is_ok_and(|old| old == file.contents) {
                continue;
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::write(&dest, &file.contents)
                .with_context(|| format!("writing {}", dest.display()))?;
            changed += 1;
        }
        Ok(changed)
    }
}

/// Renders `generated` into a temporary directory and compares it with `root`.
fn check(generated: &Generated, root: &Path) -> Result<Vec<Stale>> {
    let fresh = tempfile::tempdir().context("creating a temporary directory")?;
    generated.write_to(fresh.path())?;
    let mut paths: BTreeSet<PathBuf> = generated.owned_dirs.iter().cloned().collect();
    // Files outside owned directories are compared one by one.
    let loose: Vec<&Path> = generated
        .files
        .iter()
        .map(|f| f.path.as_path())
        .filter(|p| !generated.owned_dirs.iter().any(|d| p.starts_with(d)))
        .collect();
    paths.extend(loose.iter().map(|p| p.to_path_buf()));
    compare(fresh.path(), root, &paths.into_iter().collect::<Vec<_>>())
}

/// Compares the trees `fresh` and `committed` below each of `paths` (directories are
/// compared recursively, including files present on only one side; a path that is a file
/// in `fresh` is compared as a file). Returns what differs, sorted.
pub(crate) fn compare(fresh: &Path, committed: &Path, paths: &[PathBuf]) -> Result<Vec<Stale>> {
    let mut stale = Vec::new();
    for path in paths {
        let files: BTreeSet<PathBuf> = if fresh.join(path).is_file() {
            BTreeSet::from([path.clone()])
        } else {
            let mut set: BTreeSet<PathBuf> = list_files(fresh, path)?.into_iter().collect();
            set.extend(list_files(committed, path)?);
            set
        };
        for file in files {
            let want = read_opt(&fresh.join(&file))?;
            let have = read_opt(&committed.join(&file))?;
            let kind = match (want, have) {
                (Some(w), Some(h)) if w == h => continue,
                (Some(_), Some(_)) => StaleKind::Differs,
                (Some(_), None) => StaleKind::Missing,
                (None, Some(_)) => StaleKind::Extra,
                (None, None) => continue,
            };
            stale.push(Stale { path: file, kind });
        }
    }
    stale.sort();
    stale.dedup();
    Ok(stale)
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Files below `root/dir`, recursively, as paths relative to `root`; none if `dir` does
/// not exist.
fn list_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(root.join(&d)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        for entry in entries {
            let entry = entry?;
            let rel = d.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(rel);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
