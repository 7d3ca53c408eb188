//! The skip/require policy for e2e tests, driven by the `MESH_E2E` environment variable.
//!
//! | `MESH_E2E`            | prerequisites present | prerequisites missing                 |
//! |-----------------------|-----------------------|---------------------------------------|
//! | unset, `""`, `auto`   | run                   | print `SKIPPED: …` to stderr, return  |
//! | `require`             | run                   | **panic**: the test fails with reason |
//! | `skip`                | print `SKIPPED: …`    | print `SKIPPED: …`                    |
//! | anything else         | **panic** (a typo must not turn CI's `require` into a skip) | |
//!
//! CI sets `MESH_E2E=require`, so an e2e test can never pass silently there. Locally, without
//! root, the tests say `SKIPPED: <test>: <reason> (set MESH_E2E=require to make this a failure)`.
//! The line is written straight to the process's stderr (not through the test harness's
//! capture), so `cargo test` shows it; under cargo-nextest pass `--success-output immediate`
//! (or `final`) to see it.
//!
//! The decision itself is the pure function [`decide`], unit-tested without root.

use std::io::Write;

use crate::prereq::{self, Prerequisites, Unavailable};
use crate::testbed::{Builder, Testbed};

/// The environment variable that selects the [`Mode`].
pub const ENV: &str = "MESH_E2E";

/// What `MESH_E2E` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run when possible, skip loudly otherwise (unset, empty or `auto`).
    Auto,
    /// Run, and fail when the machine cannot (`require`).
    Require,
    /// Never run e2e tests; say so (`skip`).
    Skip,
}

impl Mode {
    /// Parses a `MESH_E2E` value (case-insensitive, surrounding whitespace ignored).
    ///
    /// `None` (unset) is [`Mode::Auto`]. An unknown value is an error naming the value.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let Some(raw) = value else {
            return Ok(Self::Auto);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "require" => Ok(Self::Require),
            "skip" => Ok(Self::Skip),
            _ => Err(format!(
                "{ENV}={raw:?} is not one of `auto`, `require`, `skip`"
            )),
        }
    }
}

/// The outcome of the policy for one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Prerequisites are present: run the test.
    Run,
    /// Return early after printing `SKIPPED` with this reason.
    Skip(String),
    /// Fail the test with this reason.
    Fail(String),
}

/// Decides what an e2e test does, given the raw `MESH_E2E` value and a prerequisite check.
///
/// `prerequisites` is called only when the answer depends on it (not under `skip`, not for an
/// invalid value). A pure function: no environment, no I/O.
pub fn decide(
    env_value: Option<&str>,
    prerequisites: impl FnOnce() -> Result<(), Unavailable>,
) -> Decision {
    let mode = match Mode::parse(env_value) {
        Ok(mode) => mode,
        Err(reason) => return Decision::Fail(reason),
    };
    if mode == Mode::Skip {
        return Decision::Skip(format!("{ENV}=skip"));
    }
    match (prerequisites(), mode) {
        (Ok(()), _) => Decision::Run,
        (Err(why), Mode::Require) => Decision::Fail(format!(
            "{why} ({ENV}=require makes this a failure; unset it to skip instead)"
        )),
        (Err(why), _) => Decision::Skip(why.to_string()),
    }
}

/// The test's name: libtest and nextest run each test on a thread named after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Prints the `SKIPPED` line directly to stderr, bypassing the test harness's capture.
fn report_skip(test: &str, reason: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {reason} (set {ENV}=require to make this a failure)"
    );
}

/// Applies the policy and returns the prerequisites when the test should run.
///
/// Use at the top of an e2e test that sets up its own environment:
/// `let Some(_prereqs) = mesh_testbed::prerequisites_or_skip() else { return };`
///
/// # Panics
///
/// When the policy says the test must fail: `MESH_E2E=require` with prerequisites missing, or
/// an invalid `MESH_E2E` value. This is the intended way for the run to fail.
pub fn prerequisites_or_skip() -> Option<Prerequisites> {
    let test = test_name();
    let env = std::env::var_os(ENV).map(|v| v.to_string_lossy().into_owned());
    let mut found = None;
    let decision = decide(env.as_deref(), || {
        prereq::check().map(|p| {
            found = Some(p);
        })
    });
    match decision {
        Decision::Run => found,
        Decision::Skip(reason) => {
            report_skip(&test, &reason);
            None
        }
        Decision::Fail(reason) => {
            panic!("{test}: e2e test cannot run: {reason}")
        }
    }
}

/// Applies the policy and builds the testbed when the test should run.
///
/// The first line of every testbed e2e test:
///
/// ```no_run
/// use mesh_testbed::Testbed;
///
/// let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(2)) else {
///     return;
/// };
/// # drop(tb);
/// ```
///
/// # Panics
///
/// As [`prerequisites_or_skip`], and also when the prerequisites are present but the testbed
/// cannot be built (that is a bug or a broken machine, never a reason to skip).
pub fn testbed_or_skip(builder: Builder) -> Option<Testbed> {
    prerequisites_or_skip()?;
    match builder.build() {
        Ok(tb) => Some(tb),
        Err(e) => panic!("{}: cannot build the testbed: {e}", test_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prereq::Problem;

    fn missing() -> Result<(), Unavailable> {
        Err(Unavailable::new(vec![Problem::new(
            "not running as root (euid 1000)",
            "run as root",
        )]))
    }

    fn present() -> Result<(), Unavailable> {
        Ok(())
    }

    fn not_called() -> Result<(), Unavailable> {
        panic!("prerequisites must not be checked here")
    }

    #[test]
    fn parse_modes() {
        assert_eq!(Mode::parse(None), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("")), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("auto")), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("require")), Ok(Mode::Require));
        assert_eq!(Mode::parse(Some(" REQUIRE\n")), Ok(Mode::Require));
        assert_eq!(Mode::parse(Some("skip")), Ok(Mode::Skip));
        let err = Mode::parse(Some("requir")).unwrap_err();
        assert!(err.contains("\"requir\""), "{err}");
    }

    #[test]
    fn require_with_missing_prerequisites_fails_with_reason() {
        let Decision::Fail(reason) = decide(Some("require"), missing) else {
            panic!("must fail");
        };
        assert!(reason.contains("not running as root"), "{reason}");
        assert!(reason.contains("run as root"), "{reason}");
        assert!(reason.contains("MESH_E2E=require"), "{reason}");
    }

    #[test]
    fn auto_with_missing_prerequisites_skips_with_reason() {
        for env in [None, Some(""), Some("auto")] {
            let Decision::Skip(reason) = decide(env, missing) else {
                panic!("{env:?} must skip");
            };
            assert!(reason.contains("not running as root"), "{reason}");
        }
    }

    #[test]
    fn present_prerequisites_run() {
        assert_eq!(decide(None, present), Decision::Run);
        assert_eq!(decide(Some("auto"), present), Decision::Run);
        assert_eq!(decide(Some("require"), present), Decision::Run);
    }

    #[test]
    fn skip_forces_skip_without_checking() {
        assert_eq!(
            decide(Some("skip"), not_called),
            Decision::Skip("MESH_E2E=skip".to_owned())
        );
    }

    #[test]
    fn unknown_value_fails_without_checking() {
        let Decision::Fail(reason) = decide(Some("yes please"), not_called) else {
            panic!("must fail");
        };
        assert!(reason.contains("MESH_E2E"), "{reason}");
    }
}
