//! Test support for the end-to-end tests: the shared document fixtures and a fake debug
//! API server.

pub(crate) mod fixtures;
pub(crate) mod server;
