//! Every mistake in a derive is a compile error with a span: one `tests/ui/*.rs` case each,
//! with the expected message in the `.stderr` beside it (regenerate with `TRYBUILD=overwrite`).
//!
//! The cases live here rather than in `dolittle-sdk` so that trybuild's own build only needs
//! the SDK and serde, not the Runtime that the SDK's tests start.

#[test]
fn each_derive_mistake_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
