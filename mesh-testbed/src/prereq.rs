//! Prerequisite detection: can this machine host a testbed, and if not, why not.
//!
//! [`check`] looks for root, the `ip`, `nsenter`, `setpriv` and `iptables` binaries, and
//! whether `ip netns` can really create a namespace with a bridge and a veth pair in it. The
//! answer is computed once per process. The skip/require policy in [`crate::policy`] turns a
//! missing prerequisite into a loud skip or a failure.

use std::fmt;
use std::io;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::cmd;

/// What a successful prerequisite check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prerequisites {
    /// Which kernel backend the `iptables` binary drives.
    pub iptables: IptablesBackend,
    /// The first line of `iptables --version`, e.g. `iptables v1.8.9 (nf_tables)`.
    pub iptables_version: String,
}

/// The backend behind the `iptables` binary (capture rules must use the one the host uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IptablesBackend {
    /// `iptables-nft`: rules become nftables rules.
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface.
    Legacy,
    /// The version line named neither backend.
    Unknown,
}

impl IptablesBackend {
    /// Classifies the output of `iptables --version`.
    pub fn from_version_line(line: &str) -> Self {
        if line.contains("nf_tables") {
            Self::Nft
        } else if line.contains("legacy") {
            Self::Legacy
        } else {
            Self::Unknown
        }
    }
}

/// One missing prerequisite: what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is missing, e.g. "not running as root (euid 1000)".
    pub what: String,
    /// How to fix it, e.g. "apt-get install -y iptables".
    pub fix: String,
}

impl Problem {
    /// A problem with a description and a fix.
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Why this machine cannot host a testbed: one or more [`Problem`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    problems: Vec<Problem>,
}

impl Unavailable {
    /// An `Unavailable` listing `problems` (expected to be non-empty).
    pub fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    /// The problems found, in the order they were checked.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("network-namespace testbed unavailable: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} (fix: {})", p.what, p.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unavailable {}

/// Checks the prerequisites once per process and returns the cached answer afterwards.
pub(crate) fn check() -> Result<Prerequisites, Unavailable> {
    static CHECKED: OnceLock<Result<Prerequisites, Unavailable>> = OnceLock::new();
    CHECKED.get_or_init(check_uncached).clone()
}

fn check_uncached() -> Result<Prerequisites, Unavailable> {
    let mut problems = Vec::new();

    let euid = nix::unistd::geteuid();
    let root = euid.is_root();
    if !root {
        problems.push(Problem::new(
            format!("not running as root (euid {euid})"),
            "run as root (`sudo -E cargo test` for the tests, `sudo meshctl demo \
             --transparent` for the demo), or in a container with CAP_SYS_ADMIN and \
             CAP_NET_ADMIN",
        ));
    }

    let ip = probe_binary(
        cmd::IP,
        &["-V"],
        "apt-get install -y iproute2",
        &mut problems,
    );
    probe_binary(
        cmd::NSENTER,
        &["--version"],
        "apt-get install -y util-linux",
        &mut problems,
    );
    probe_binary(
        cmd::SETPRIV,
        &["--version"],
        "apt-get install -y util-linux",
        &mut problems,
    );
    let iptables_version = probe_binary(
        cmd::IPTABLES,
        &["--version"],
        "apt-get install -y iptables",
        &mut problems,
    )
    .unwrap_or_default();

    // Creating a namespace needs root; without it the probe only repeats the first problem.
    if root
        && ip.is_some()
        && let Err(problem) = probe_netns()
    {
        problems.push(problem);
    }

    if problems.is_empty() {
        let iptables_version = iptables_version
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        Ok(Prerequisites {
            iptables: IptablesBackend::from_version_line(&iptables_version),
            iptables_version,
        })
    } else {
        Err(Unavailable::new(problems))
    }
}

/// Runs `program args`; records a problem and returns `None` if it cannot run.
fn probe_binary(
    program: &str,
    args: &[&str],
    fix: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            // Some tools print their version on stderr.
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Some(text)
        }
        Ok(out) => {
            problems.push(Problem::new(
                format!(
                    "`{program} {}` failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                fix,
            ));
            None
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            problems.push(Problem::new(format!("`{program}` not found in PATH"), fix));
            None
        }
        // execvp reports EACCES when the program is missing but a PATH directory is
        // unreadable (e.g. a root-only directory in PATH of an unprivileged user).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            problems.push(Problem::new(
                format!("`{program}` not found in PATH or not executable ({e})"),
                fix,
            ));
            None
        }
        Err(e) => {
            problems.push(Problem::new(format!("cannot run `{program}`: {e}"), fix));
            None
        }
    }
}

/// Creates a probe namespace holding a bridge and a veth pair, then deletes it.
fn probe_netns() -> Result<(), Problem> {
    let name = format!("{}{}-probe", crate::cleanup::PREFIX, std::process::id());
    // A probe left by an earlier process with our PID would make `add` fail.
    if crate::cleanup::netns_exists(&name) {
        let _ = cmd::ip(["netns", "del", &name]);
    }
    let fix = "the testbed needs `ip netns` with veth and bridge support: run as root with \
               CAP_SYS_ADMIN and CAP_NET_ADMIN (Docker: --privileged), a writable /run/netns, \
               and the `veth` and `bridge` kernel modules";
    cmd::ip(["netns", "add", &name])
        .map_err(|e| Problem::new(format!("cannot create a network namespace: {e}"), fix))?;
    let result = cmd::ip_in(&name, ["link", "add", "br0", "type", "bridge"])
        .and_then(|_| {
            cmd::ip_in(
                &name,
                ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            )
        })
        .map_err(|e| Problem::new(format!("cannot create bridge/veth links: {e}"), fix));
    let deleted = cmd::ip(["netns", "del", &name])
        .map_err(|e| Problem::new(format!("cannot delete a network namespace: {e}"), fix));
    result.and(deleted).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_backend_from_version() {
        assert_eq!(
            IptablesBackend::from_version_line("iptables v1.8.9 (nf_tables)"),
            IptablesBackend::Nft
        );
        assert_eq!(
            IptablesBackend::from_version_line("iptables v1.8.9 (legacy)"),
            IptablesBackend::Legacy
        );
        assert_eq!(
            IptablesBackend::from_version_line("iptables v1.6.0"),
            IptablesBackend::Unknown
        );
    }

    #[test]
    fn unavailable_names_every_problem_and_fix() {
        let u = Unavailable::new(vec![
            Problem::new("not running as root (euid 1000)", "run as root"),
            Problem::new(
                "`iptables` not found in PATH",
                "apt-get install -y iptables",
            ),
        ]);
        let msg = u.to_string();
        assert!(
            msg.contains("not running as root (euid 1000) (fix: run as root)"),
            "{msg}"
        );
        assert!(
            msg.contains("`iptables` not found in PATH (fix: apt-get install -y iptables)"),
            "{msg}"
        );
    }

    #[test]
    fn missing_binary_is_reported_not_found() {
        let mut problems = Vec::new();
        let out = probe_binary(
            "mesh-testbed-no-such-binary",
            &["--version"],
            "apt-get install -y nothing",
            &mut problems,
        );
        assert!(out.is_none());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("not found"), "{:?}", problems[0]);
        assert_eq!(problems[0].fix, "apt-get install -y nothing");
    }
}
