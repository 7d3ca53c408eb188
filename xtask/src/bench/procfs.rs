//! Reading a process's CPU time and memory from `/proc` (Linux).
//!
//! - CPU: `utime + stime` from `/proc/<pid>/stat` (fields 14 and 15, in clock ticks; the
//!   process line sums every thread), converted with `sysconf(_SC_CLK_TCK)`.
//! - Memory: `VmRSS` (resident now) and `VmHWM` (the peak resident size since start) from
//!   `/proc/<pid>/status`, in KiB.
//!
//! The parsers are pure functions over the file text, so they are unit-tested here.

use std::io;

/// Clock ticks per second for the `/proc/<pid>/stat` times (`getconf CLK_TCK`); 100 when
/// the system does not say.
pub(crate) fn clk_tck() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => u64::try_from(n).unwrap_or(100),
        _ => 100,
    }
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The second field, the command name, is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value in KiB of a `Key:   1234 kB` line of `/proc/<pid>/status`.
pub(crate) fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = value.split_ascii_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// CPU time of process `pid` (all threads, user + system) in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no utime/stime"),
        )
    })
}

/// Resident memory of process `pid`: (`VmRSS`, `VmHWM`) in KiB.
pub(crate) fn memory_kib(pid: u32) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let get = |key: &str| {
        parse_status_kib(&text, key).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status: no {key}"),
            )
        })
    };
    Ok((get("VmRSS")?, get("VmHWM")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a `)` inside must not shift the fields.
        let stat = "4242 (mesh proxy) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 9000000 1000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        let plain = "7 (haproxy) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 5 6 7";
        assert_eq!(parse_stat_cpu_ticks(plain), Some(3));
        assert_eq!(parse_stat_cpu_ticks("7 (haproxy) R 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no name here"), None);
    }

    #[test]
    fn status_values_in_kib() {
        let status = "Name:\tmesh-proxy\nVmPeak:\t  123456 kB\nVmHWM:\t    8200 kB\n\
                      VmRSS:\t    6144 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(6144));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(8200));
        // `VmRSS` must not match a longer key that starts the same, nor a missing one.
        assert_eq!(parse_status_kib("VmRSSx:\t1 kB\n", "VmRSS"), None);
        assert_eq!(parse_status_kib(status, "RssAnon"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        cpu_ticks(pid).expect("own stat");
        let (rss, hwm) = memory_kib(pid).expect("own status");
        assert!(rss > 0 && hwm >= rss, "rss {rss} hwm {hwm}");
        assert!(clk_tck() >= 1);
    }
}
