//! Policy files, read as the file source reads them (`Loader::add_file`, then the checks
//! across documents). Whatever the text, loading must not panic, and every problem must
//! name this file and a line that exists in it, so that a user can find it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use outrigger_control_plane::policy::{Loader, ServiceKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("shop/fuzzed.yaml");
    let mut loader = Loader::new("cluster.local");
    loader.add_file(file, text);
    match loader.finish() {
        Ok(policy) => {
            for service in &policy.services {
                let key = ServiceKey::new(service.namespace.clone(), service.name.clone());
                assert!(policy.service(&key).is_some(), "{key} is found by its key");
                // What the watch stream sends is what the proxy reads back.
                let json = serde_json::to_string(service).expect("a service serializes");
                let back: outrigger_api::ServiceView =
                    serde_json::from_str(&json).expect("a service deserializes");
                assert_eq!(&back, service, "{json}");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error names at least one problem");
            let last_line = line_count(text);
            let mut previous = 0;
            for error in &errors.0 {
                assert_eq!(error.file, file, "{error}");
                let line = error
                    .line
                    .expect("a problem in a file that was read has a line");
                assert!(
                    (1..=last_line).contains(&line),
                    "{error}: not a line of the file ({last_line} lines)"
                );
                assert!(line >= previous, "errors are sorted by line");
                previous = line;
                assert!(
                    !error.message.trim().is_empty(),
                    "{error}: says what is wrong"
                );
            }
        }
    }
});

/// Lines as YAML counts them (a break is `\n`, `\r\n` or a lone `\r`), counting the
/// empty line after a final break, where an error about a missing value points.
fn line_count(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let breaks = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    breaks as u64 + 1
}
