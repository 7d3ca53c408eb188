//! Root rotation as a pure decision: given the stored files, what the CA holds in memory
//! and the time, either the next change to make to the storage or the settled
//! [`Authority`] (who signs, what is trusted).
//!
//! Two ways new CA material arrives, one sequence for both:
//!
//! - **staged** (our own root): `mesh-control ca rotate` writes `next-root-cert.pem` and
//!   `next-root-key.pem`. The new root is *announced* (added to the trust bundle at once);
//!   after the grace period the files are *promoted* (old root → `previous-root-cert.pem`,
//!   next → `root-cert.pem` / `root-key.pem`, the old key gone) and the new root signs.
//! - **in place** (a plug-in CA's `cacerts` files replaced, or a root replaced by hand):
//!   the new material is announced while the CA keeps signing with what it loaded before
//!   (held in memory), then switched to after the grace period — at once when it brings no
//!   new root (an intermediate renewed under the same root).
//!
//! Either way the roots that stop signing become *retiring*: they stay in the bundle until
//! every certificate they signed has expired (the switch plus the workload certificate
//! lifetime), then leave. `rotation.json` records the announcement and the retiring roots
//! (public data only), so a restart in any phase carries on: an interrupted promotion is
//! finished; an in-place announcement whose old key was only in memory switches at once
//! and keeps the old roots as retiring.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::material::{self, Locate, Signer, hex, sha256};
use super::store::{Files, Op};
use super::{Error, Settings, names};

/// `rotation.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotationFile {
    /// New material in the bundle, not signing yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) announced: Option<Announced>,
    /// Roots that stopped signing, trusted until their certificates have expired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) retiring: Vec<Retiring>,
    /// The SHA-256 of the staged root certificate last promoted: while
    /// `next-root-cert.pem` with this digest is still present, a promotion was interrupted
    /// and is finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) promoted: Option<String>,
}

/// An announced change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Announced {
    /// The fingerprint of the new material.
    pub(crate) sha256: String,
    /// When it entered the bundle.
    pub(crate) at_unix_ms: u64,
    /// Staged (`next-root-*`) rather than replaced in place.
    pub(crate) staged: bool,
    /// In place only: the roots of the material being replaced (PEM), to keep trusting
    /// them if the process restarts before the switch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) previous_roots: String,
}

/// A retiring root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Retiring {
    /// The root, PEM.
    pub(crate) root: String,
    /// When it leaves the bundle.
    pub(crate) drop_after_unix_ms: u64,
}

/// What the CA holds in memory across decisions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memory {
    /// What signs now (`None` before the first decision).
    pub(crate) running: Option<Arc<Signer>>,
    /// Announced material that will sign after the grace period.
    pub(crate) pending: Option<Arc<Signer>>,
}

/// Who signs and what is trusted.
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    pub(crate) signer: Arc<Signer>,
    pub(crate) pending: Option<(Arc<Signer>, SystemTime)>,
    pub(crate) retiring: Vec<(CertificateDer<'static>, SystemTime)>,
}

impl Authority {
    /// Every trusted root: the signer's, the announced, the retiring; no duplicates.
    pub(crate) fn bundle(&self) -> Vec<CertificateDer<'static>> {
        let mut out: Vec<CertificateDer<'static>> = Vec::new();
        let all = self
            .signer
            .roots
            .iter()
            .chain(self.pending.iter().flat_map(|(p, _)| p.roots.iter()))
            .chain(self.retiring.iter().map(|(r, _)| r));
        for root in all {
            if !out.contains(root) {
                out.push(root.clone());
            }
        }
        out
    }
}

/// The outcome of one decision.
#[derive(Debug)]
pub(crate) enum Step {
    /// Apply `ops` to the storage, adopt `memory`, then decide again.
    Apply {
        ops: Vec<Op>,
        memory: Memory,
        reason: &'static str,
    },
    /// Nothing to change: serve with this.
    Settled {
        authority: Authority,
        memory: Memory,
        problems: Vec<String>,
    },
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn pem(certs: &[CertificateDer<'static>]) -> String {
    mesh_api::tls::certs_to_pem(certs)
}

fn roots_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    if pem.trim().is_empty() {
        return Vec::new();
    }
    mesh_api::tls::certs_from_pem(pem.as_bytes()).unwrap_or_default()
}

/// `rotation.json` as ops: written, or removed when it says nothing.
fn write_rotation(r: &RotationFile) -> Op {
    if r.announced.is_none() && r.retiring.is_empty() {
        return Op::Remove(names::ROTATION);
    }
    let mut data = serde_json::to_vec_pretty(r).unwrap_or_default();
    data.push(b'\n');
    Op::Write {
        name: names::ROTATION,
        data,
    }
}

/// Adds `roots` as retiring until `until` (an entry already retiring keeps its time).
fn retire(r: &mut RotationFile, roots: &[CertificateDer<'static>], until: SystemTime) {
    for root in roots {
        let pem = pem(std::slice::from_ref(root));
        if !r.retiring.iter().any(|x| x.root == pem) {
            r.retiring.push(Retiring {
                root: pem,
                drop_after_unix_ms: unix_ms(until),
            });
        }
    }
}

fn minus(
    a: &[CertificateDer<'static>],
    b: &[CertificateDer<'static>],
) -> Vec<CertificateDer<'static>> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// The fingerprint a signer loaded from `cert` + `key` has.
fn pair_fingerprint(files: &Files, cert: &str, key: &str) -> [u8; 32] {
    let mut fp = Vec::new();
    fp.extend_from_slice(files.get(cert).unwrap_or_default());
    fp.extend_from_slice(files.get(key).unwrap_or_default());
    sha256(&fp)
}

/// Parses `rotation.json`.
pub(crate) fn read_rotation(files: &Files, locate: Locate<'_>) -> Result<RotationFile, Error> {
    match files.get(names::ROTATION) {
        None => Ok(RotationFile::default()),
        Some(data) => serde_json::from_slice(data).map_err(|e| Error::Invalid {
            location: locate(names::ROTATION),
            problem: format!("unreadable rotation state: {e}"),
            fix: "restore it, or delete it to end the rotation in progress (a retiring root then leaves the trust bundle at once)".into(),
        }),
    }
}

/// Whether the storage holds a plug-in CA.
pub(crate) fn is_plug_in(files: &Files) -> bool {
    files.has(names::CA_CERT) || files.has(names::CA_KEY)
}

/// Loads the stored signing material, reusing a loaded signer with the same fingerprint.
fn stored_signer(
    files: &Files,
    mem: &Memory,
    locate: Locate<'_>,
    now: SystemTime,
) -> Result<Arc<Signer>, Error> {
    let fp = if is_plug_in(files) {
        material::plug_in_fingerprint(files)
    } else {
        pair_fingerprint(files, names::ROOT_CERT, names::ROOT_KEY)
    };
    for s in mem.running.iter().chain(mem.pending.iter()) {
        if s.fingerprint == fp {
            return Ok(s.clone());
        }
    }
    if is_plug_in(files) {
        material::load_plug_in(files, locate, now)
    } else {
        material::load_root(files, names::ROOT_CERT, names::ROOT_KEY, locate, now)
    }
}

fn finish_promotion(files: &Files) -> Vec<Op> {
    let mut ops = Vec::new();
    if files.has(names::NEXT_ROOT_KEY) {
        ops.push(Op::Rename {
            from: names::NEXT_ROOT_KEY,
            to: names::ROOT_KEY,
        });
    }
    if files.has(names::NEXT_ROOT_CERT) {
        ops.push(Op::Rename {
            from: names::NEXT_ROOT_CERT,
            to: names::ROOT_CERT,
        });
    }
    ops
}

/// Decides the next step. Errors are fatal only at start (`mem.running` unset): later, a
/// problem with new material is reported in `Settled::problems` while the CA keeps
/// signing with what it has.
pub(crate) fn decide(
    files: &Files,
    mem: &Memory,
    settings: &Settings,
    now: SystemTime,
    locate: Locate<'_>,
) -> Result<Step, Error> {
    let now_ms = unix_ms(now);
    let drop_at = now + settings.workload_cert_ttl;
    let rot = read_rotation(files, locate)?;
    let mut problems = Vec::new();

    // Retired roots whose certificates have all expired leave the bundle.
    if rot.retiring.iter().any(|r| r.drop_after_unix_ms <= now_ms) {
        let mut next = rot.clone();
        next.retiring.retain(|r| r.drop_after_unix_ms > now_ms);
        let mut ops = vec![write_rotation(&next)];
        if next.retiring.is_empty() {
            ops.push(Op::Remove(names::PREVIOUS_ROOT_CERT));
        }
        return Ok(Step::Apply {
            ops,
            memory: mem.clone(),
            reason: "every certificate a retired root signed has expired; it leaves the trust bundle",
        });
    }

    let plug_in = is_plug_in(files);
    let staged = !plug_in && (files.has(names::NEXT_ROOT_CERT) || files.has(names::NEXT_ROOT_KEY));
    let next_fp = hex(&pair_fingerprint(
        files,
        names::NEXT_ROOT_CERT,
        names::NEXT_ROOT_KEY,
    ));
    // The certificate identifies a promotion: its key is renamed first.
    let next_cert_fp = files.get(names::NEXT_ROOT_CERT).map(|c| hex(&sha256(c)));
    if staged && next_cert_fp.is_some() && rot.promoted == next_cert_fp {
        return Ok(Step::Apply {
            ops: finish_promotion(files),
            memory: mem.clone(),
            reason: "finishing an interrupted promotion of the next root",
        });
    }

    let running = match &mem.running {
        Some(r) => r.clone(),
        None => {
            // Start: whatever is stored signs.
            let stored = stored_signer(files, mem, locate, now)?;
            let memory = Memory {
                running: Some(stored.clone()),
                pending: None,
            };
            if let Some(a) = rot.announced.as_ref().filter(|a| !a.staged) {
                // Announced in place before a restart: the old key was only in memory, so
                // switch now and keep trusting the old roots for a certificate lifetime.
                let mut next = rot.clone();
                next.announced = None;
                retire(
                    &mut next,
                    &minus(&roots_from_pem(&a.previous_roots), &stored.roots),
                    drop_at,
                );
                return Ok(Step::Apply {
                    ops: vec![write_rotation(&next)],
                    memory,
                    reason: "the CA material was replaced before a restart; switching to it",
                });
            }
            return Ok(Step::Apply {
                ops: Vec::new(),
                memory,
                reason: "loaded",
            });
        }
    };

    let retiring: Vec<(CertificateDer<'static>, SystemTime)> = rot
        .retiring
        .iter()
        .flat_map(|r| {
            roots_from_pem(&r.root)
                .into_iter()
                .map(move |c| (c, from_unix_ms(r.drop_after_unix_ms)))
        })
        .collect();
    let trusted_now: Vec<CertificateDer<'static>> = running
        .roots
        .iter()
        .chain(mem.pending.iter().flat_map(|p| p.roots.iter()))
        .chain(retiring.iter().map(|(r, _)| r))
        .cloned()
        .collect();

    // In place: the stored material is not what signs.
    let stored_fp = if plug_in {
        material::plug_in_fingerprint(files)
    } else {
        pair_fingerprint(files, names::ROOT_CERT, names::ROOT_KEY)
    };
    let mut pending = None;
    if stored_fp != running.fingerprint {
        match stored_signer(files, mem, locate, now) {
            Err(e) => problems.push(format!(
                "{e} (the CA keeps signing with the material it loaded before)"
            )),
            Ok(new) => {
                let announced = rot
                    .announced
                    .as_ref()
                    .filter(|a| !a.staged && a.sha256 == hex(&new.fingerprint));
                if let Some(a) = announced {
                    let switch_at = from_unix_ms(a.at_unix_ms) + settings.root_rotation_grace;
                    if now >= switch_at {
                        let mut next = rot.clone();
                        next.announced = None;
                        retire(&mut next, &minus(&running.roots, &new.roots), drop_at);
                        return Ok(Step::Apply {
                            ops: vec![write_rotation(&next)],
                            memory: Memory {
                                running: Some(new),
                                pending: None,
                            },
                            reason: "the grace period is over: the new CA material signs",
                        });
                    }
                    pending = Some((new, switch_at));
                } else if new.roots.iter().all(|r| trusted_now.contains(r)) {
                    // No new root (or already trusted): switch at once.
                    let mut next = rot.clone();
                    if next.announced.as_ref().is_some_and(|a| !a.staged) {
                        next.announced = None;
                    }
                    retire(&mut next, &minus(&running.roots, &new.roots), drop_at);
                    let ops = if next == rot {
                        Vec::new()
                    } else {
                        vec![write_rotation(&next)]
                    };
                    return Ok(Step::Apply {
                        ops,
                        memory: Memory {
                            running: Some(new),
                            pending: None,
                        },
                        reason: "new CA material under roots already trusted: it signs at once",
                    });
                } else {
                    let mut next = rot.clone();
                    next.announced = Some(Announced {
                        sha256: hex(&new.fingerprint),
                        at_unix_ms: now_ms,
                        staged: false,
                        previous_roots: pem(&running.roots),
                    });
                    return Ok(Step::Apply {
                        ops: vec![write_rotation(&next)],
                        memory: Memory {
                            running: Some(running),
                            pending: Some(new),
                        },
                        reason: "new CA material: its root joins the trust bundle now and signs after the grace period",
                    });
                }
            }
        }
    }

    // Staged: `ca rotate` wrote the next root.
    if staged && pending.is_none() {
        let next = mem
            .pending
            .as_ref()
            .filter(|p| hex(&p.fingerprint) == next_fp)
            .cloned()
            .map_or_else(
                || {
                    material::load_root(
                        files,
                        names::NEXT_ROOT_CERT,
                        names::NEXT_ROOT_KEY,
                        locate,
                        now,
                    )
                },
                Ok,
            );
        match next {
            Err(e) => problems.push(format!("{e} (the rotation waits until it is fixed)")),
            Ok(next) => match rot
                .announced
                .as_ref()
                .filter(|a| a.staged && a.sha256 == next_fp)
            {
                Some(a) => {
                    let switch_at = from_unix_ms(a.at_unix_ms) + settings.root_rotation_grace;
                    if now >= switch_at {
                        let mut after = rot.clone();
                        after.announced = None;
                        after.promoted = next_cert_fp;
                        retire(&mut after, &minus(&running.roots, &next.roots), drop_at);
                        let previous: Vec<CertificateDer<'static>> = after
                            .retiring
                            .iter()
                            .flat_map(|r| roots_from_pem(&r.root))
                            .collect();
                        let mut ops = vec![
                            Op::Write {
                                name: names::PREVIOUS_ROOT_CERT,
                                data: pem(&previous).into_bytes(),
                            },
                            write_rotation(&after),
                        ];
                        ops.extend(finish_promotion(files));
                        return Ok(Step::Apply {
                            ops,
                            memory: Memory {
                                running: Some(running),
                                pending: Some(next),
                            },
                            reason: "the grace period is over: promoting the next root",
                        });
                    }
                    pending = Some((next, switch_at));
                }
                None => {
                    let mut after = rot.clone();
                    after.announced = Some(Announced {
                        sha256: next_fp,
                        at_unix_ms: now_ms,
                        staged: true,
                        previous_roots: String::new(),
                    });
                    return Ok(Step::Apply {
                        ops: vec![write_rotation(&after)],
                        memory: Memory {
                            running: Some(running),
                            pending: Some(next),
                        },
                        reason: "a next root was staged: it joins the trust bundle now and signs after the grace period",
                    });
                }
            },
        }
    } else if !staged && rot.announced.as_ref().is_some_and(|a| a.staged) {
        let mut after = rot.clone();
        after.announced = None;
        return Ok(Step::Apply {
            ops: vec![write_rotation(&after)],
            memory: Memory {
                running: Some(running),
                pending: None,
            },
            reason: "the staged next root was removed: rotation abandoned",
        });
    }
    if plug_in && (files.has(names::NEXT_ROOT_CERT) || files.has(names::NEXT_ROOT_KEY)) {
        problems.push(format!(
            "{} is ignored: a plug-in CA is rotated by replacing its cacerts files",
            locate(names::NEXT_ROOT_CERT)
        ));
    }

    let memory = Memory {
        running: Some(running.clone()),
        pending: pending.as_ref().map(|(p, _)| p.clone()),
    };
    Ok(Step::Settled {
        authority: Authority {
            signer: running,
            pending,
            retiring,
        },
        memory,
        problems,
    })
}

/// The stored signer and the bundle, without changing anything (for `ca issue`, which
/// must not move a rotation along with its own settings): the stored material, its roots,
/// a staged next root, and the retiring roots not yet dropped.
pub(crate) fn offline(
    files: &Files,
    now: SystemTime,
    locate: Locate<'_>,
) -> Result<(Arc<Signer>, Vec<CertificateDer<'static>>), Error> {
    let signer = stored_signer(files, &Memory::default(), locate, now)?;
    let rot = read_rotation(files, locate)?;
    let mut bundle = signer.roots.clone();
    if !is_plug_in(files)
        && files.has(names::NEXT_ROOT_CERT)
        && let Ok(next) = material::load_root(
            files,
            names::NEXT_ROOT_CERT,
            names::NEXT_ROOT_KEY,
            locate,
            now,
        )
    {
        bundle.extend(next.roots.iter().cloned());
    }
    let now_ms = unix_ms(now);
    for r in rot
        .retiring
        .iter()
        .filter(|r| r.drop_after_unix_ms > now_ms)
    {
        bundle.extend(roots_from_pem(&r.root));
    }
    if let Some(a) = &rot.announced {
        bundle.extend(roots_from_pem(&a.previous_roots));
    }
    let mut out: Vec<CertificateDer<'static>> = Vec::new();
    for root in bundle {
        if !out.contains(&root) {
            out.push(root);
        }
    }
    Ok((signer, out))
}
