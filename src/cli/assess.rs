//! `bth-gateway assess FILE`: the rules on one JSON transfer description.

use std::path::Path;

/// Prints the decision JSON and returns 0; for a case file (`{name, input, expect}`) whose
/// decision differs from `expect`, also prints one line per differing key on stderr and returns
/// 1; on malformed input prints a one-line error naming the key and returns 2.
pub fn run(file: &Path) -> i32 {
    let input = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: reading {}: {e}", file.display());
            return 2;
        }
    };
    match crate::policy::assess_input::assess_document(&input, &crate::policy::PolicyConfig::default()) {
        Ok(assessed) => {
            println!("{}", serde_json::to_string_pretty(&assessed.decision).unwrap_or_default());
            for mismatch in &assessed.mismatches {
                eprintln!("differs from expect: {mismatch}");
            }
            if assessed.mismatches.is_empty() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            2
        }
    }
}
