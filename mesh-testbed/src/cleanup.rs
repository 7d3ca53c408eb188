//! Teardown that always happens: the registry of live testbeds, garbage collection of
//! namespaces left by killed test processes, and a signal handler for interrupted runs.
//!
//! Every testbed namespace is named `mtb-<pid>-<n>-<suffix>`, where `<pid>` is the owning
//! process and `<n>` a per-process counter. Dropping a [`crate::Testbed`] deletes its
//! namespaces. When a test process dies without running destructors (SIGKILL, a nextest
//! timeout), the next [`crate::Testbed`] built on the machine deletes namespaces whose owning
//! PID is gone; namespaces with *our* PID that no live testbed of this process owns are left
//! over by an earlier process that had the same PID, and are deleted too. SIGINT, SIGTERM and
//! SIGHUP delete this process's namespaces and kill its guarded child processes before the
//! process dies of the signal.
//!
//! Limitation: PIDs are compared in our PID namespace; do not share `/run/netns` between
//! containers with different PID namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use crate::{Error, cmd};

/// The prefix of every namespace the testbed creates.
pub(crate) const PREFIX: &str = "mtb-";

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// Live testbeds of this process: testbed id (`<pid>-<n>`) → its namespace names.
static LIVE: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());

/// PIDs of child processes guarded by a live [`crate::Process`].
static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the named namespace exists.
pub(crate) fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Deletes a named namespace (its links go with it).
pub(crate) fn delete_netns(name: &str) -> Result<(), Error> {
    cmd::ip(["netns", "del", name]).map(drop)
}

/// Garbage-collects stale namespaces, then registers a new testbed's namespaces, atomically
/// with respect to other testbeds of this process.
pub(crate) fn register(id: &str, names: Vec<String>) {
    let mut live = lock(&LIVE);
    collect_locked(&live);
    live.insert(id.to_owned(), names);
}

/// Forgets a testbed (its namespaces were deleted).
pub(crate) fn unregister(id: &str) {
    lock(&LIVE).remove(id);
}

/// Records a guarded child so a signal can kill it.
pub(crate) fn register_child(pid: u32) {
    lock(&CHILDREN).insert(pid);
}

/// Forgets a guarded child (it was reaped).
pub(crate) fn unregister_child(pid: u32) {
    lock(&CHILDREN).remove(&pid);
}

/// Deletes stale testbed namespaces; returns the names deleted.
pub(crate) fn collect_garbage() -> Vec<String> {
    collect_locked(&lock(&LIVE))
}

fn collect_locked(live: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut deleted = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_stale(&name, own, |id| live.contains_key(id), pid_alive) {
            continue;
        }
        match delete_netns(&name) {
            Ok(()) => deleted.push(name),
            // Another process may be collecting the same namespace.
            Err(e) if !netns_exists(&name) => drop(e),
            Err(e) => eprintln!("mesh-testbed: cannot delete stale namespace {name}: {e}"),
        }
    }
    deleted
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether a namespace name belongs to a testbed that no live process owns.
///
/// `is_live(id)` says whether this process has a live testbed with that id; `alive(pid)`
/// whether a process exists.
pub(crate) fn is_stale(
    name: &str,
    own_pid: u32,
    is_live: impl Fn(&str) -> bool,
    alive: impl Fn(u32) -> bool,
) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((pid, tail)) = rest.split_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid != own_pid {
        return !alive(pid);
    }
    // Ours: `<n>-<suffix>` not owned by a live testbed was left by an earlier process with
    // the same PID. Anything else with our PID (the prerequisite probe) is in use.
    let Some((n, _suffix)) = tail.split_once('-') else {
        return false;
    };
    if n.parse::<u64>().is_err() {
        return false;
    }
    !is_live(&format!("{pid}-{n}"))
}

/// Installs, once per process, the handler that tears everything down on SIGINT, SIGTERM
/// or SIGHUP and then lets the signal terminate the process.
pub(crate) fn install_signal_handler() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "mesh-testbed: cannot install the signal handler (cleanup on Ctrl-C): {e}"
                );
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("mtb-signals".to_owned())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    teardown_all();
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    // Not reached for terminating signals.
                    std::process::exit(128 + signal);
                }
            });
        if let Err(e) = spawned {
            eprintln!("mesh-testbed: cannot start the signal thread: {e}");
        }
    });
}

/// Kills guarded children and deletes every live testbed's namespaces.
fn teardown_all() {
    for pid in lock(&CHILDREN).iter() {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let live = lock(&LIVE);
    for name in live.values().flatten() {
        if let Err(e) = delete_netns(name) {
            eprintln!("mesh-testbed: teardown on signal: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: u32 = 4242;

    fn stale(name: &str) -> bool {
        is_stale(name, OWN, |id| id == "4242-1", |pid| pid == 77)
    }

    #[test]
    fn foreign_names_are_never_stale() {
        assert!(!stale("my-netns"));
        assert!(!stale("mtb-"));
        assert!(!stale("mtb-abc-0-br"));
        assert!(!stale("mtbx-99-0-br"));
    }

    #[test]
    fn dead_owner_is_stale_live_owner_is_not() {
        assert!(stale("mtb-99-0-br"));
        assert!(stale("mtb-99-probe"));
        assert!(!stale("mtb-77-0-br"));
        assert!(!stale("mtb-77-3-pod0"));
    }

    #[test]
    fn own_pid_is_stale_only_when_not_live() {
        assert!(!stale("mtb-4242-1-br"));
        assert!(!stale("mtb-4242-1-pod0"));
        assert!(stale("mtb-4242-0-br"));
        assert!(stale("mtb-4242-2-pod1"));
        assert!(!stale("mtb-4242-probe"));
    }
}
