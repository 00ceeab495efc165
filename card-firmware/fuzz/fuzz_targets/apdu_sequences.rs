//! libFuzzer target: APDU sequences against a card with an authenticated session (see
//! `../harness.rs` for the input format and the invariants checked).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
