//! The Dolittle Runtime.
