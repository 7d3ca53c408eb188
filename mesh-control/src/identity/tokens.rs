//! Local-mode workload tokens: one secret per (namespace, service account), in
//! `<state-dir>/tokens/<namespace>/<service-account>` (file `0600`, directories `0700`; 32
//! random bytes as 64 hex characters and a newline).
//!
//! A proxy started with `--token-file` sends its token as `authorization: Bearer <token>`
//! to obtain its first certificate. mesh-control creates a token for every (namespace,
//! service account) of the workloads in its registry, never deletes one, and
//! `mesh-control token <ns>/<sa>` creates one on demand. Lookups compare SHA-256 digests
//! (a hash-map lookup on the digest reveals nothing about the token); a token not known
//! yet — made by `mesh-control token` since the last scan — is looked up again after a
//! rescan of the directory. Rescans happen at most once a second: a miss waits for the
//! next one (every miss waiting then shares it), so a flood of bad tokens costs one
//! directory scan a second and never starves a good new token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use mesh_api::spiffe::SpiffeId;

use crate::ca::Error;
use crate::files;

/// The directory of tokens under a state directory.
pub const TOKENS_DIR: &str = "tokens";

/// How often a miss may rescan the directory.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

fn digest(token: &str) -> [u8; 32] {
    crate::ca::sha256(token.as_bytes())
}

/// The token file of `namespace`/`service_account` under `state_dir`. The names come from
/// a validated [`SpiffeId`], so they are safe path segments (no `/`, never `.` or `..`).
pub fn token_path(state_dir: &Path, id: &SpiffeId) -> PathBuf {
    state_dir
        .join(TOKENS_DIR)
        .join(id.namespace())
        .join(id.service_account())
}

/// Creates the token of `id` under `state_dir` unless it exists; returns its path and
/// whether it was created.
pub fn ensure_token(state_dir: &Path, id: &SpiffeId) -> Result<(PathBuf, bool), Error> {
    let path = token_path(state_dir, id);
    if path.is_file() {
        return Ok((path, false));
    }
    if let Some(dir) = path.parent() {
        files::create_private_dir(&state_dir.join(TOKENS_DIR))?;
        files::create_private_dir(dir)?;
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("the system RNG failed".into()))?;
    let mut text = crate::ca::hex(&bytes);
    text.push('\n');
    let created = files::create_new_atomic(&path, text.as_bytes(), files::SECRET)?;
    Ok((path, created))
}

/// The tokens of a state directory, for authentication.
#[derive(Debug)]
pub struct LocalTokens {
    state_dir: PathBuf,
    trust_domain: String,
    by_digest: RwLock<HashMap<[u8; 32], SpiffeId>>,
    /// When the directory was last scanned; the lock serializes rescans.
    last_scan: tokio::sync::Mutex<Instant>,
}

impl LocalTokens {
    /// The tokens under `state_dir`, for identities in `trust_domain`. Scans once.
    pub fn new(state_dir: impl Into<PathBuf>, trust_domain: impl Into<String>) -> Self {
        let tokens = Self {
            state_dir: state_dir.into(),
            trust_domain: trust_domain.into(),
            by_digest: RwLock::new(HashMap::new()),
            last_scan: tokio::sync::Mutex::new(Instant::now()),
        };
        tokens.rescan();
        tokens
    }

    /// Creates the token of every `(namespace, service account)` in `ids` that has none.
    pub fn ensure_all<'a>(&self, ids: impl IntoIterator<Item = &'a SpiffeId>) {
        let mut created = 0;
        for id in ids {
            match ensure_token(&self.state_dir, id) {
                Ok((path, true)) => {
                    created += 1;
                    tracing::debug!(path = %path.display(), identity = %id, "created a workload token");
                    self.learn(&path, id);
                }
                Ok((_, false)) => {}
                Err(e) => tracing::warn!(identity = %id, "cannot create the workload token: {e}"),
            }
        }
        if created > 0 {
            tracing::info!(created, dir = %self.state_dir.join(TOKENS_DIR).display(), "workload tokens created");
        }
    }

    fn learn(&self, path: &Path, id: &SpiffeId) {
        if let Ok(text) = std::fs::read_to_string(path) {
            let token = text.trim();
            if !token.is_empty() {
                self.by_digest
                    .write()
                    .expect("tokens poisoned")
                    .insert(digest(token), id.clone());
            }
        }
    }

    fn lookup(&self, digest: &[u8; 32]) -> Option<SpiffeId> {
        self.by_digest
            .read()
            .expect("tokens poisoned")
            .get(digest)
            .cloned()
    }

    /// The identity `token` belongs to. A miss waits for the next rescan (within a
    /// second) and looks again.
    pub async fn authenticate(&self, token: &str) -> Option<SpiffeId> {
        let arrived = Instant::now();
        let d = digest(token.trim());
        if let Some(id) = self.lookup(&d) {
            return Some(id);
        }
        let mut last = self.last_scan.lock().await;
        if *last < arrived {
            // No scan since this request arrived: do one, no sooner than a second after
            // the previous.
            let since = last.elapsed();
            if since < RESCAN_EVERY {
                tokio::time::sleep(RESCAN_EVERY - since).await;
            }
            self.rescan();
            *last = Instant::now();
        }
        drop(last);
        self.lookup(&d)
    }

    /// Reads every token file.
    fn rescan(&self) {
        let root = self.state_dir.join(TOKENS_DIR);
        let mut found = HashMap::new();
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        for ns in namespaces.flatten() {
            let Ok(accounts) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            let ns_name = ns.file_name().to_string_lossy().into_owned();
            for sa in accounts.flatten() {
                let sa_name = sa.file_name().to_string_lossy().into_owned();
                if sa_name.starts_with('.') {
                    continue; // temporary files
                }
                let Ok(id) = SpiffeId::new(&self.trust_domain, &ns_name, &sa_name) else {
                    continue;
                };
                if let Ok(text) = std::fs::read_to_string(sa.path()) {
                    let token = text.trim();
                    if !token.is_empty() {
                        found.insert(digest(token), id);
                    }
                }
            }
        }
        *self.by_digest.write().expect("tokens poisoned") = found;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn id(ns: &str, sa: &str) -> SpiffeId {
        SpiffeId::new("cluster.local", ns, sa).unwrap()
    }

    #[tokio::test]
    async fn tokens_are_created_once_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = LocalTokens::new(dir.path(), "cluster.local");
        tokens.ensure_all([&id("default", "reviews"), &id("default", "reviews")]);
        let path = dir.path().join("tokens/default/reviews");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex chars and a newline: {text:?}");
        assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            tokens.authenticate(&text).await,
            Some(id("default", "reviews"))
        );
        assert_eq!(tokens.authenticate("nope").await, None);
        // Never replaced.
        tokens.ensure_all([&id("default", "reviews")]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[tokio::test]
    async fn a_token_made_elsewhere_is_found_by_a_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = LocalTokens::new(dir.path(), "cluster.local");
        let (path, created) = ensure_token(dir.path(), &id("shop", "cart")).unwrap();
        assert!(created);
        let token = std::fs::read_to_string(path).unwrap();
        assert_eq!(tokens.authenticate(&token).await, Some(id("shop", "cart")));
    }
}
