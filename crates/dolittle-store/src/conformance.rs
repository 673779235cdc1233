//! The conformance suite every backend runs (filled in with the SQLite backend).
