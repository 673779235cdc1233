//! The shared conformance suite of `dolittle-store`, on a real PostgreSQL server.
//!
//! Needs a server at `127.0.0.1:5432` (user `postgres`, trust authentication), or the one that
//! `DOLITTLE_TEST_POSTGRES_URL` names; `scripts/ensure-postgres.sh` starts the local one.

mod support;

use support::PostgresHarness;

dolittle_store::conformance_suite!(PostgresHarness::new().await);
