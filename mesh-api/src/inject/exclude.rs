//! The values of the traffic-exclusion annotations: port lists with ranges and CIDR lists,
//! checked here so that a bad value is a clear injection error instead of an init container
//! that crash-loops on `mesh-proxy init`'s own parser.
//!
//! The values are parsed by [`crate::capture`], the parser of `mesh-proxy init`'s
//! `--exclude-inbound-ports`, `--exclude-outbound-ports` and `--exclude-outbound-cidrs`, and
//! rendered (`Display`) in a form those flags accept.

use std::fmt;

/// What a port list annotation must look like (for error messages).
pub(crate) const PORTS_FORM: &str =
    "a comma-separated list of ports (1-65535) and port ranges, e.g. \"8080,9000-9010\"";

/// What a CIDR list annotation must look like (for error messages).
pub(crate) const CIDRS_FORM: &str =
    "a comma-separated list of CIDRs or IP addresses, e.g. \"10.96.0.0/12,fd00::/8\"";

/// Renders a list as the comma-separated flag value.
pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Renders port ranges as the flag value, ranges written `8000-8010` as users write them
/// (`Display` of [`crate::capture::PortRange`] is the iptables form, `8000:8010`).
pub(crate) fn join_ports(ranges: &[crate::capture::PortRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.first() == r.last() {
                r.first().to_string()
            } else {
                format!("{}-{}", r.first(), r.last())
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
