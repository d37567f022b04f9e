//! The admin socket protocol, client side: `cli::parse_admin_response`, which reads the daemon's
//! whole answer off `admin.sock`. Any bytes give an error or a status that is an HTTP status code
//! (100–599) with the body after the first blank line; a real answer in every shape axum writes
//! round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::parse_admin_response;

fuzz_target!(|data: &[u8]| {
    match parse_admin_response(data) {
        Ok((status, body)) => {
            assert!((100..=599).contains(&status), "status {status}");
            let text = String::from_utf8_lossy(data);
            let (_, after) = text.split_once("\r\n\r\n").expect("a blank line");
            assert_eq!(body, after);
        }
        Err(e) => assert!(!e.is_empty()),
    }
    // The same bytes as the body of a well-formed answer come back whole.
    let body = String::from_utf8_lossy(data);
    let answer = format!(
        "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        parse_admin_response(answer.as_bytes()),
        Ok((409, body.into_owned()))
    );
});
