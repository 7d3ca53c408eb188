//! The `MESH_E2E` policy for meshctl's end-to-end tests that need more than the crate
//! (sibling binaries, curl, redis-server): included with `#[path]` by the test crates that
//! use it, so they need not pull in the rest of `support`.

/// Says why an end-to-end test (or part of one) cannot run here; under
/// `MESH_E2E=require` (as CI runs the tests) that fails the test instead.
pub(crate) fn skip(why: &str) {
    if std::env::var("MESH_E2E").is_ok_and(|v| v == "require") {
        panic!("MESH_E2E=require but {why}");
    }
    eprintln!("SKIPPED: {why}");
}
