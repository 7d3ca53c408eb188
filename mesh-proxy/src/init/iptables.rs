//! Talking to iptables: choosing the backend (nft or legacy), finding its binaries, reading
//! the `nat` table with `*-save` and applying rulesets with `*-restore --noflush`, and
//! checking whether the network namespace has IPv6 at all.
//!
//! Backend choice (`--iptables-mode auto`), as Istio and Linkerd do it: the kernel runs both
//! nftables and x_tables rules, so rules must go where the namespace's other rules already are
//! (e.g. a CNI plugin's); when neither backend has any rule, the backend of the system's
//! `iptables` binary (`iptables --version` says `(nf_tables)` or `(legacy)`) wins.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;
use super::rules::Family;

/// How long `*-restore` waits for the xtables lock (legacy backend) before failing.
const LOCK_WAIT_SECONDS: &str = "5";

/// Directories searched for the iptables binaries after `PATH` (init containers and `sudo`
/// often run with a `PATH` that lacks the sbin directories).
const SBIN_DIRS: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// The hint for a missing binary.
pub(crate) const INSTALL_HINT: &str = "install iptables: apt-get install -y iptables";

/// The hint for a command that ran and failed for lack of privileges (the usual cause).
pub(crate) const PRIVILEGE_HINT: &str = "is this running with NET_ADMIN in the pod's network \
     namespace? (Kubernetes: an init container with securityContext.capabilities.add \
     [NET_ADMIN, NET_RAW]; locally: run as root inside the namespace)";

/// The hint for a command that failed because the kernel lacks a feature.
const KERNEL_HINT: &str = "does the kernel provide the nat table with the REDIRECT target and \
     the owner match (modules iptable_nat/ip6table_nat or nft_chain_nat, xt_REDIRECT, \
     xt_owner)? also check NET_ADMIN in the pod's network namespace";

/// `--iptables-mode`: which iptables backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IptablesMode {
    /// The backend that already holds rules in this namespace, else the system default.
    #[default]
    Auto,
    /// nftables (`iptables-nft-restore`).
    Nft,
    /// x_tables (`iptables-legacy-restore`).
    Legacy,
}

/// An iptables backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-nft`: rules are nftables rules.
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface.
    Legacy,
}

impl Backend {
    /// Both backends, nft first (the modern default).
    pub(crate) const ALL: [Self; 2] = [Self::Nft, Self::Legacy];

    /// Classifies the first line of `iptables --version` (`iptables v1.8.9 (nf_tables)`).
    pub fn from_version(line: &str) -> Option<Self> {
        if line.contains("nf_tables") {
            Some(Self::Nft)
        } else if line.contains("legacy") {
            Some(Self::Legacy)
        } else {
            None
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Nft => "nft",
            Self::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nft => "nf_tables",
            Self::Legacy => "legacy",
        })
    }
}

/// The `*-save` / `*-restore` binaries of one backend for one address family.
#[derive(Clone, Debug)]
pub(crate) struct Tools {
    pub(crate) backend: Backend,
    pub(crate) family: Family,
    save: PathBuf,
    restore: PathBuf,
}

impl Tools {
    /// Finds `iptables-nft-save` / `iptables-nft-restore` (or the legacy / ip6tables
    /// variants); falls back to plain `iptables-save` / `iptables-restore` when the plain
    /// `iptables` binary reports the wanted backend.
    pub(crate) fn find(backend: Backend, family: Family) -> Result<Self, Error> {
        let base = base_name(family);
        let suffix = backend.suffix();
        let exact = (
            find_program(&format!("{base}-{suffix}-save")),
            find_program(&format!("{base}-{suffix}-restore")),
        );
        if let (Some(save), Some(restore)) = exact {
            return Ok(Self {
                backend,
                family,
                save,
                restore,
            });
        }
        let plain = (
            find_program(&format!("{base}-save")),
            find_program(&format!("{base}-restore")),
        );
        if let (Some(save), Some(restore)) = plain
            && system_backend(family) == Some(backend)
        {
            return Ok(Self {
                backend,
                family,
                save,
                restore,
            });
        }
        Err(Error::NotFound {
            program: format!("{base}-{suffix}-restore"),
            hint: INSTALL_HINT,
        })
    }

    /// `iptables-save -t nat`: the current `nat` table.
    pub(crate) fn save_nat(&self) -> Result<String, Error> {
        run(&self.save, &["-t", "nat"], None)
    }

    /// `iptables-save`: every table that exists (creates none, unlike `-t nat`).
    pub(crate) fn save_all(&self) -> Result<String, Error> {
        run(&self.save, &[], None)
    }

    /// Applies `ruleset` atomically with `iptables-restore --noflush`.
    pub(crate) fn restore(&self, ruleset: &str) -> Result<(), Error> {
        run(&self.restore, &self.restore_args(), Some(ruleset)).map(drop)
    }

    /// The restore command line, for logs.
    pub(crate) fn restore_command(&self) -> String {
        command_line(&self.restore, &self.restore_args())
    }

    fn restore_args(&self) -> [&'static str; 3] {
        ["--noflush", "--wait", LOCK_WAIT_SECONDS]
    }
}

fn base_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// The backend of the plain `iptables` / `ip6tables` binary, from `--version`.
fn system_backend(family: Family) -> Option<Backend> {
    let program = find_program(base_name(family))?;
    let out = run(&program, &["--version"], None).ok()?;
    Backend::from_version(out.lines().next().unwrap_or_default())
}

/// Picks the backend for `mode`; returns it with the reason, for the log.
pub(crate) fn choose_backend(mode: IptablesMode) -> Result<(Backend, String), Error> {
    match mode {
        IptablesMode::Nft => return Ok((Backend::Nft, "--iptables-mode nft".to_owned())),
        IptablesMode::Legacy => {
            return Ok((Backend::Legacy, "--iptables-mode legacy".to_owned()));
        }
        IptablesMode::Auto => {}
    }
    let counts = Backend::ALL.map(|backend| {
        let rules = Tools::find(backend, Family::V4)
            .and_then(|tools| tools.save_all())
            .map(|save| count_rules(&save))
            .unwrap_or(0);
        (backend, rules)
    });
    if let Some(backend) = pick_by_rules(counts) {
        let described: Vec<String> = counts.iter().map(|(b, n)| format!("{b} {n}")).collect();
        return Ok((
            backend,
            format!(
                "it holds most of this namespace's rules: {}",
                described.join(", ")
            ),
        ));
    }
    if let Some(backend) = system_backend(Family::V4) {
        return Ok((
            backend,
            "no rules in either backend; `iptables --version` names it".to_owned(),
        ));
    }
    for backend in Backend::ALL {
        if Tools::find(backend, Family::V4).is_ok() {
            return Ok((backend, "the only backend installed".to_owned()));
        }
    }
    Err(Error::NotFound {
        program: "iptables-nft-restore or iptables-legacy-restore".to_owned(),
        hint: INSTALL_HINT,
    })
}

/// The backend with more rules, if any has rules and they differ.
fn pick_by_rules(counts: [(Backend, usize); 2]) -> Option<Backend> {
    let [(a, na), (b, nb)] = counts;
    match na.cmp(&nb) {
        std::cmp::Ordering::Greater => Some(a),
        std::cmp::Ordering::Less => Some(b),
        std::cmp::Ordering::Equal => None,
    }
}

/// Counts the rules (`-A` lines) in `iptables-save` output.
fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Whether the calling process's network namespace has IPv6, from `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ipv6 {
    /// No IPv6 here (module absent, `ipv6.disable=1`, or `disable_ipv6` set): why.
    Absent(String),
    /// IPv6 is on; `routable` says whether any interface has a non-loopback,
    /// non-link-local address (traffic that would bypass capture without ip6tables rules).
    Present {
        /// Whether a global (or site/unique-local) address exists.
        routable: bool,
    },
}

/// Reads `/proc/net/if_inet6` and `/proc/sys/net/ipv6/conf/all/disable_ipv6` (both are per
/// network namespace: they describe the namespace of the process reading them).
pub(crate) fn ipv6_support() -> Ipv6 {
    let disabled = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Err(_) => Ipv6::Absent("the kernel has no IPv6 (/proc/net/if_inet6 is missing)".into()),
        Ok(_) if disabled => Ipv6::Absent("net.ipv6.conf.all.disable_ipv6 is 1".into()),
        Ok(table) => Ipv6::Present {
            routable: has_routable_ipv6(&table),
        },
    }
}

/// Whether `/proc/net/if_inet6` lists an address that is neither loopback (scope `10`) nor
/// link-local (scope `20`).
fn has_routable_ipv6(if_inet6: &str) -> bool {
    if_inet6.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.get(3), Some(scope) if !matches!(*scope, "10" | "20"))
    })
}

/// Searches `PATH`, then the sbin directories, for `name`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn command_line(program: &Path, args: &[&str]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Runs `program args`, feeding `stdin` when given; returns stdout on success.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let command = command_line(program, args);
    let spawn_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                program: program.display().to_string(),
                hint: INSTALL_HINT,
            }
        } else {
            Error::Spawn {
                command: command.clone(),
                source,
            }
        }
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A failed write shows up as the command's own failure below (it exits early).
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(Error::Command {
        hint: hint_for(&stderr),
        command,
        status: out.status.to_string(),
        stderr,
    })
}

/// Picks the hint that fits an iptables error message.
fn hint_for(stderr: &str) -> &'static str {
    let lower = stderr.to_ascii_lowercase();
    let kernel = [
        "couldn't load",
        "no chain/target/match",
        "does not exist",
        "not supported",
        "unknown option",
        "protocol not supported",
    ];
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        PRIVILEGE_HINT
    } else if kernel.iter().any(|k| lower.contains(k)) {
        KERNEL_HINT
    } else {
        PRIVILEGE_HINT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_version_line() {
        assert_eq!(
            Backend::from_version("iptables v1.8.9 (nf_tables)"),
            Some(Backend::Nft)
        );
        assert_eq!(
            Backend::from_version("iptables v1.8.9 (legacy)"),
            Some(Backend::Legacy)
        );
        assert_eq!(Backend::from_version("iptables v1.6.1"), None);
    }

    #[test]
    fn backend_with_rules_wins() {
        use Backend::{Legacy, Nft};
        assert_eq!(pick_by_rules([(Nft, 0), (Legacy, 3)]), Some(Legacy));
        assert_eq!(pick_by_rules([(Nft, 5), (Legacy, 0)]), Some(Nft));
        assert_eq!(pick_by_rules([(Nft, 5), (Legacy, 2)]), Some(Nft));
        assert_eq!(pick_by_rules([(Nft, 0), (Legacy, 0)]), None);
    }

    #[test]
    fn rules_are_counted() {
        let save = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j X\n-A X -j RETURN\nCOMMIT\n";
        assert_eq!(count_rules(save), 2);
        assert_eq!(count_rules(""), 0);
    }

    #[test]
    fn routable_ipv6_addresses() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let link = "fe80000000000000b0d3fffffe4a6c9b 02 40 20 80     eth0\n";
        let global = "fd000000000000000000000000000002 02 40 00 80     eth0\n";
        assert!(!has_routable_ipv6(""));
        assert!(!has_routable_ipv6(&format!("{lo}{link}")));
        assert!(has_routable_ipv6(&format!("{lo}{link}{global}")));
    }

    #[test]
    fn hints_fit_the_error() {
        assert_eq!(
            hint_for(
                "iptables-restore v1.8.9 (legacy): iptables-restore: unable to initialize table 'nat': Permission denied (you must be root)"
            ),
            PRIVILEGE_HINT
        );
        assert_eq!(
            hint_for("Couldn't load target `REDIRECT':No such file or directory"),
            KERNEL_HINT
        );
        assert!(PRIVILEGE_HINT.contains("NET_ADMIN"));
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = run(Path::new("/nonexistent/iptables-restore"), &[], None).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install -y iptables"),
            "{err}"
        );
    }

    #[test]
    fn failing_command_names_command_stderr_and_hint() {
        let err = run(
            Path::new("/bin/sh"),
            &[
                "-c",
                "cat >/dev/null; echo 'Permission denied (you must be root)' >&2; exit 4",
            ],
            Some("*nat\nCOMMIT\n"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`/bin/sh -c"), "{msg}");
        assert!(msg.contains("exit status: 4"), "{msg}");
        assert!(msg.contains("you must be root"), "{msg}");
        assert!(msg.contains("NET_ADMIN"), "{msg}");
    }
}
