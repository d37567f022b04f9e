//! The configuration file (`config::parse_str`): any text is either settings or errors, and every
//! error names a key and a fix and echoes at most ~100 characters of the value it is about.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{parse_str, ConfigError};

/// `jsonbody::echo` keeps 80 characters, then "… (N bytes)", in quotes.
const MAX_VALUE_CHARS: usize = 110;

pub fn check(e: &ConfigError) {
    assert!(!e.key.is_empty(), "an error without a key: {e:?}");
    assert!(!e.problem.is_empty(), "an error without a problem: {e:?}");
    assert!(!e.fix.is_empty(), "an error without a fix: {e:?}");
    assert!(
        e.value.chars().count() <= MAX_VALUE_CHARS,
        "an error echoes {} characters of a value: {e:?}",
        e.value.chars().count()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_str(text, "node-a") {
        Ok(settings) => {
            // Valid settings validate again to the same thing (nothing depends on parse order).
            assert_eq!(parse_str(text, "node-a").ok().as_ref(), Some(&settings));
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "Err with no error");
            for e in &errors.0 {
                check(e);
            }
        }
    }
});
