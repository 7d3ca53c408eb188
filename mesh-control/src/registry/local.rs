//! The local-files registry: a directory of YAML (Kubernetes `v1` Services, WorkloadEntries,
//! our CRDs, Gateway API routes) as the source of truth, for local mode.
//!
//! [`LocalRegistry::poll`] rescans the directory and, when anything changed (a file added,
//! removed, rewritten, or a Kubernetes-style `..data` symlink swap), loads and validates the
//! whole set with the same loader and validator as `meshctl analyze`. A set with any error
//! is rejected — the diagnostics name file, line and field — and the last good snapshot
//! stays in force, so one broken file never takes traffic down. Changes are debounced: a
//! reload waits until the directory has looked the same for [`SETTLE`], so an editor's
//! write-rename dance or a `cp -r` is read once, complete.
//!
//! Scanning is polling (a stat per file per interval), not inotify: it sees symlink swaps
//! and network filesystems the same way, and a directory of config is small.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mesh_api::config::{Diagnostic, Loader, Resource, Severity, validate};

/// How long the directory must stay unchanged before a reload.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A loaded, validated set of resources.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The resources, in file order.
    pub resources: Vec<Resource>,
    /// Warnings and notes found while loading (errors never reach a snapshot).
    pub diagnostics: Vec<Diagnostic>,
    /// Counts accepted snapshots from 1.
    pub generation: u64,
}

/// What a poll found.
#[derive(Debug)]
pub enum Reload {
    /// Nothing changed (or a change is still settling).
    Unchanged,
    /// A new snapshot is in force.
    Applied(Arc<Snapshot>),
    /// The directory changed but does not validate; the previous snapshot stays.
    Rejected(Vec<Diagnostic>),
}

/// The files of the directory and what they looked like, to notice changes cheaply.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Watches one directory of config.
#[derive(Debug)]
pub struct LocalRegistry {
    dir: PathBuf,
    default_namespace: String,
    /// The fingerprint of the last load (good or bad).
    loaded: Option<Fingerprint>,
    /// A fingerprint seen but not loaded yet, and since when.
    pending: Option<(Fingerprint, Instant)>,
    current: Option<Arc<Snapshot>>,
    generation: u64,
}

impl LocalRegistry {
    /// A registry for `dir`; resources without a namespace go to `default_namespace`.
    pub fn new(dir: impl Into<PathBuf>, default_namespace: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            default_namespace: default_namespace.into(),
            loaded: None,
            pending: None,
            current: None,
            generation: 0,
        }
    }

    /// The snapshot in force, if one was ever accepted.
    pub fn current(&self) -> Option<&Arc<Snapshot>> {
        self.current.as_ref()
    }

    /// Loads the directory now, without waiting for it to settle (at start-up).
    pub fn load_now(&mut self) -> Reload {
        let fingerprint = fingerprint(&self.dir);
        self.pending = None;
        self.load(fingerprint)
    }

    /// Rescans the directory; reloads when it changed and has settled.
    pub fn poll(&mut self, now: Instant) -> Reload {
        let fingerprint = fingerprint(&self.dir);
        if self.loaded.as_ref() == Some(&fingerprint) {
            self.pending = None;
            return Reload::Unchanged;
        }
        match &self.pending {
            Some((seen, since)) if *seen == fingerprint => {
                if now.duration_since(*since) < SETTLE {
                    return Reload::Unchanged;
                }
            }
            _ => {
                self.pending = Some((fingerprint, now));
                return Reload::Unchanged;
            }
        }
        self.pending = None;
        self.load(fingerprint)
    }

    fn load(&mut self, fingerprint: Fingerprint) -> Reload {
        let mut loader = Loader::new().with_default_namespace(&self.default_namespace);
        loader.add_path(&self.dir);
        let mut set = loader.finish();
        validate::validate(&mut set);
        self.loaded = Some(fingerprint);
        if set.has_errors() {
            let errors = set
                .diagnostics
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            return Reload::Rejected(errors);
        }
        self.generation += 1;
        let snapshot = Arc::new(Snapshot {
            resources: set.resources.into_iter().map(|l| l.resource).collect(),
            diagnostics: set.diagnostics,
            generation: self.generation,
        });
        self.current = Some(snapshot.clone());
        Reload::Applied(snapshot)
    }
}

/// Every config file under `dir` (as the loader would read them) with its modification
/// time and size, following symlinks. An unreadable directory has an empty fingerprint.
fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    collect(dir, &mut out, 0);
    out.sort();
    out
}

fn collect(dir: &Path, out: &mut Fingerprint, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if depth > 16 {
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                collect(&path, out, depth + 1);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push((path, meta.modified().ok(), meta.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart}\n\
        spec:\n  selector: {app: cart}\n  ports: [{name: grpc, port: 7070}]\n";
    const WORKLOAD: &str = "apiVersion: networking.mesh.dev/v1alpha1\nkind: WorkloadEntry\n\
        metadata: {name: cart-1}\nspec: {address: 127.0.1.2, labels: {app: cart}}\n";

    fn settled(reg: &mut LocalRegistry) -> Reload {
        let t0 = Instant::now();
        match reg.poll(t0) {
            Reload::Unchanged => reg.poll(t0 + SETTLE),
            other => other,
        }
    }

    #[test]
    fn loads_validates_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SERVICE).unwrap();
        let mut reg = LocalRegistry::new(dir.path(), "default");
        let Reload::Applied(first) = reg.load_now() else {
            panic!("the first load applies")
        };
        assert_eq!(first.resources.len(), 1);
        assert_eq!(first.generation, 1);
        assert!(matches!(reg.poll(Instant::now()), Reload::Unchanged));

        // A new file is picked up once it settles.
        std::fs::write(dir.path().join("we.yaml"), WORKLOAD).unwrap();
        let t0 = Instant::now();
        assert!(matches!(reg.poll(t0), Reload::Unchanged), "still settling");
        let Reload::Applied(second) = reg.poll(t0 + SETTLE) else {
            panic!("applied after settling")
        };
        assert_eq!(second.resources.len(), 2);
        assert_eq!(second.generation, 2);

        // A broken file is rejected with its location; the last good set stays.
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: x\n",
        )
        .unwrap();
        let Reload::Rejected(errors) = settled(&mut reg) else {
            panic!("a broken file is rejected")
        };
        assert!(errors.iter().all(|d| d.severity == Severity::Error));
        assert!(
            errors[0].location.file.ends_with("bad.yaml"),
            "{}",
            errors[0]
        );
        assert!(errors[0].location.line > 0, "{}", errors[0]);
        assert_eq!(reg.current().unwrap().generation, 2);
        // Rejected once, not again on every poll.
        assert!(matches!(settled(&mut reg), Reload::Unchanged));

        // Fixed: applied again.
        std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
        let Reload::Applied(third) = settled(&mut reg) else {
            panic!("the fix applies")
        };
        assert_eq!(third.generation, 3);
        assert_eq!(third.resources.len(), 2);
    }

    #[test]
    fn semantic_errors_are_rejected_too() {
        let dir = tempfile::tempdir().unwrap();
        let vs = "apiVersion: networking.mesh.dev/v1alpha1\nkind: VirtualService\n\
            metadata: {name: cart}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    \
            - destination: {host: cart}\n      weight: 90\n    - destination: {host: cart}\n      weight: 5\n";
        std::fs::write(dir.path().join("vs.yaml"), vs).unwrap();
        let mut reg = LocalRegistry::new(dir.path(), "default");
        let Reload::Rejected(errors) = reg.load_now() else {
            panic!("weights summing to 95 are rejected")
        };
        assert_eq!(errors[0].code, mesh_api::config::Code::WeightSum);
        assert!(reg.current().is_none());
    }

    #[test]
    fn kubernetes_style_symlink_swaps_are_seen() {
        // ConfigMap volumes: files are symlinks into `..data`, which is swapped atomically.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("config.yaml"), SERVICE).unwrap();
        std::fs::write(v2.join("config.yaml"), format!("{SERVICE}---\n{WORKLOAD}")).unwrap();
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
        let mut reg = LocalRegistry::new(dir.path(), "default");
        let Reload::Applied(first) = reg.load_now() else {
            panic!("loads through the symlinks")
        };
        assert_eq!(first.resources.len(), 1);
        // Swap `..data` to the new version, as the kubelet does (rename over the link).
        std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let Reload::Applied(second) = settled(&mut reg) else {
            panic!("the swap is seen")
        };
        assert_eq!(second.resources.len(), 2);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_mesh() {
        let mut reg = LocalRegistry::new("/nonexistent/mesh-config", "default");
        let Reload::Rejected(errors) = reg.load_now() else {
            panic!("a missing directory is rejected")
        };
        assert_eq!(errors[0].code, mesh_api::config::Code::ReadError);
    }
}
