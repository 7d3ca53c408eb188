//! `meshctl proxy-config <PROXY> secret`: the workload certificate the control plane's CA
//! last issued to one proxy (`GET /debug/secrets?proxy=...`, a [`ProxySecretList`]).
//!
//! Not part of the config the control plane computes: the CA records what it signed, per
//! proxy, so this section comes from its own endpoint and `all` leaves it out. The table
//! shows the identity, the chain (leaf first) with validity in RFC 3339 UTC and relative to
//! the control plane's clock (`expires in 11h57m`, `EXPIRED 3m ago`), then the trust
//! bundle's roots. `-o json|yaml` prints the [`ProxySecret`] as the control plane sent it.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use http::StatusCode;
use mesh_api::status::{CertInfo, ProxySecret, ProxySecretList};

use super::Args;
use crate::control;
use crate::output::{Format, Table, age, age_between, rfc3339, write_document};

/// The debug API path.
pub const PATH: &str = "/debug/secrets";

/// What `/debug/secrets?proxy=` found.
#[derive(Debug)]
enum Found {
    /// Exactly one proxy's certificate, and the control plane's clock.
    One {
        secret: ProxySecret,
        now_unix_ms: u64,
    },
    /// PROXY names no proxy the CA issued to; the control plane's words when it gave some.
    NotIssued(Option<String>),
    /// PROXY names several proxies, in the control plane's words or ours.
    Ambiguous(String),
}

/// Prints the certificate of `args.proxy`.
pub(super) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (secret, now_unix_ms) = match fetch(args)? {
        Found::One {
            secret,
            now_unix_ms,
        } => (secret, now_unix_ms),
        Found::NotIssued(reason) => {
            eprintln!(
                "error: no certificate issued to {:?}: is it running with --control-plane and a token? see `meshctl proxy-status`",
                args.proxy
            );
            if let Some(reason) = reason {
                eprintln!("the control plane says: {reason}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Found::Ambiguous(reason) => {
            eprintln!(
                "error: proxy {:?}: {reason}\nhint: `meshctl proxy-status` lists the connected proxies",
                args.proxy
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    match args.output {
        Format::Table => out.write_all(render(&secret, now_unix_ms).as_bytes())?,
        format => write_document(format, &secret, out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the control plane; `Err` when it gave no usable answer (exit 2).
fn fetch(args: &Args) -> anyhow::Result<Found> {
    let path = control::secrets_path(&args.proxy);
    match control::get::<ProxySecretList>(&args.control, &path) {
        Ok(list) => Ok(pick(&args.proxy, list)),
        Err(control::Error::Status {
            at, status, body, ..
        }) if status == StatusCode::NOT_FOUND && body.starts_with(PATH) => {
            // The path itself is unknown (`/debug/secrets: not found; try ...`).
            anyhow::bail!(
                "the control plane at {at} does not serve {PATH}: it predates certificate issuance; upgrade mesh-control or use a meshctl of its version"
            )
        }
        Err(control::Error::Status { status, body, .. }) if status == StatusCode::NOT_FOUND => {
            Ok(Found::NotIssued(Some(body)))
        }
        Err(control::Error::Status { status, body, .. }) if status == StatusCode::CONFLICT => {
            Ok(Found::Ambiguous(body))
        }
        Err(e) => Err(e.into()),
    }
}

/// The one secret of an answer to `?proxy=query`.
fn pick(query: &str, mut list: ProxySecretList) -> Found {
    match list.secrets.len() {
        0 => Found::NotIssued(None),
        1 => Found::One {
            secret: list.secrets.remove(0),
            now_unix_ms: list.now_unix_ms,
        },
        n => {
            let ids: Vec<&str> = list.secrets.iter().map(|s| s.proxy.as_str()).collect();
            Found::Ambiguous(format!(
                "{query:?} matches {n} proxies ({}); name one by id or pod.namespace",
                ids.join(", ")
            ))
        }
    }
}

/// The identity, the chain and the trust bundle, with times relative to `now_unix_ms`.
pub fn render(secret: &ProxySecret, now_unix_ms: u64) -> String {
    let mut text = format!("proxy {}\nidentity {}\n", secret.proxy, secret.identity);
    let _ = writeln!(
        text,
        "issued {} ago, authenticated by {}",
        age_between(secret.issued_unix_ms, now_unix_ms),
        secret.authenticated_by
    );

    text.push_str("\nCertificate chain:\n");
    let mut chain = Table::new(&[
        "TYPE",
        "SERIAL",
        "SPIFFE ID",
        "NOT BEFORE",
        "NOT AFTER",
        "ISSUER",
    ]);
    for (i, cert) in secret.chain.iter().enumerate() {
        let kind = if i == 0 {
            "leaf"
        } else if cert.is_ca && cert.subject == cert.issuer {
            "root"
        } else {
            "intermediate"
        };
        chain.row(vec![
            kind.to_owned(),
            cert.serial.clone(),
            cert.spiffe_id.clone().unwrap_or_else(|| "-".to_owned()),
            not_before(cert, now_unix_ms),
            not_after(cert, now_unix_ms),
            cert.issuer.clone(),
        ]);
    }
    if chain.is_empty() {
        text.push_str("no certificates\n");
    } else {
        text.push_str(&chain.render());
    }

    text.push_str("\nTrust bundle:\n");
    let mut roots = Table::new(&["SUBJECT", "SERIAL", "NOT AFTER"]);
    for cert in &secret.trust_bundle {
        roots.row(vec![
            cert.subject.clone(),
            cert.serial.clone(),
            not_after(cert, now_unix_ms),
        ]);
    }
    if roots.is_empty() {
        text.push_str("no roots\n");
    } else {
        text.push_str(&roots.render());
    }
    text
}

/// `2023-11-14T22:10:20Z`, with `(starts in 2m)` while not yet valid.
fn not_before(cert: &CertInfo, now_unix_ms: u64) -> String {
    let at = rfc3339(cert.not_before);
    match until(cert.not_before, now_unix_ms) {
        Ok(ahead) => format!("{at} (starts in {})", age(ahead)),
        Err(_) => at,
    }
}

/// `2023-11-15T10:10:20Z (expires in 11h57m)` or `... (EXPIRED 3m ago)`.
fn not_after(cert: &CertInfo, now_unix_ms: u64) -> String {
    let at = rfc3339(cert.not_after);
    match until(cert.not_after, now_unix_ms) {
        Ok(ahead) => format!("{at} (expires in {})", age(ahead)),
        Err(past) => format!("{at} (EXPIRED {} ago)", age(past)),
    }
}

/// How far `unix_s` is ahead of `now_unix_ms` (`Ok`), or behind it (`Err`, also when equal).
fn until(unix_s: i64, now_unix_ms: u64) -> Result<Duration, Duration> {
    let delta = i128::from(unix_s) * 1000 - i128::from(now_unix_ms);
    let ms = |d: i128| Duration::from_millis(u64::try_from(d).unwrap_or(u64::MAX));
    if delta > 0 {
        Ok(ms(delta))
    } else {
        Err(ms(-delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NOW, mk_secret, mk_secret_list};

    #[test]
    fn picks_one_or_explains() {
        let list = |secrets: Vec<ProxySecret>| ProxySecretList {
            now_unix_ms: NOW,
            secrets,
        };
        assert!(matches!(
            pick("x", list(Vec::new())),
            Found::NotIssued(None)
        ));
        match pick("x", list(vec![mk_secret()])) {
            Found::One {
                secret,
                now_unix_ms,
            } => {
                assert_eq!(secret, mk_secret());
                assert_eq!(now_unix_ms, NOW);
            }
            other => panic!("{other:?}"),
        }
        let two: Vec<ProxySecret> = mk_secret_list()
            .secrets
            .into_iter()
            .filter(|s| s.proxy.contains("reviews"))
            .collect();
        match pick("reviews-v2-5c9d", list(two)) {
            Found::Ambiguous(why) => assert_eq!(
                why,
                "\"reviews-v2-5c9d\" matches 2 proxies (sidecar~10.0.0.7~reviews-v2-5c9d.default, sidecar~10.1.0.7~reviews-v2-5c9d.staging); name one by id or pod.namespace"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times_are_relative_to_the_documents_clock() {
        let now = NOW;
        let s = i64::try_from(NOW / 1000).unwrap();
        assert_eq!(until(s + 60, now), Ok(Duration::from_secs(60)));
        assert_eq!(until(s - 184, now), Err(Duration::from_secs(184)));
        assert_eq!(until(s, now), Err(Duration::ZERO));
        let mut cert = mk_secret().chain[0].clone();
        cert.not_before = s + 120;
        assert_eq!(
            not_before(&cert, now),
            "2023-11-14T22:15:20Z (starts in 2m)"
        );
        cert.not_after = s - 3 * 60;
        assert_eq!(
            not_after(&cert, now),
            "2023-11-14T22:10:20Z (EXPIRED 3m ago)"
        );
    }
}
