//! Dolittle contracts.
