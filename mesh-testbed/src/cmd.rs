//! Running the helper binaries (`ip`, `nsenter`, `setpriv`, `iptables`) with errors that
//! name the command line, its stderr and a hint.
//!
//! Everything the testbed does to the machine goes through [`run`], so every failure a test
//! sees says which command failed and why.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use crate::Error;

/// Absolute-or-PATH names of the helper binaries.
pub(crate) const IP: &str = "ip";
pub(crate) const NSENTER: &str = "nsenter";
pub(crate) const SETPRIV: &str = "setpriv";
pub(crate) const IPTABLES: &str = "iptables";

/// The hint attached to failures of `ip` commands.
pub(crate) const IP_HINT: &str = "the testbed needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and \
     iproute2 with veth and bridge support; see Testbed::check_prerequisites";

/// Renders a command as a shell-like line for error messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion with stdin closed; returns its stdout on success.
pub(crate) fn run(cmd: &mut Command, hint: &'static str) -> Result<String, Error> {
    let command = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
            hint,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            hint,
        })
    }
}

/// Runs `ip <args>`.
pub(crate) fn ip<I, S>(args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(IP).args(args), IP_HINT)
}

/// Runs `ip -n <netns> <args>`: the command acts inside that network namespace.
pub(crate) fn ip_in<I, S>(netns: &str, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(IP).args(["-n", netns]).args(args), IP_HINT)
}
