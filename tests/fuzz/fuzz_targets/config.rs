//! Any text as a config file: parsing and validation return a config or
//! errors, never panic. Host names are not resolved, files not read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sandbox = sluice::config::LoadOptions::sandbox();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = sluice::config::Config::parse_with(text, sandbox) {
            // Every error names something.
            assert!(!errors.0.is_empty());
        }
    }
});
