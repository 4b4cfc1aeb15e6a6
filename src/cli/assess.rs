//! `bth-gateway assess FILE`: the rules on one JSON transfer description.

use std::path::Path;

/// Prints the decision JSON and returns 0, or prints a one-line error naming the key and
/// returns 2.
pub fn run(file: &Path) -> i32 {
    let input = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: reading {}: {e}", file.display());
            return 2;
        }
    };
    match crate::policy::assess_json(&input) {
        Ok(decision) => {
            println!("{}", serde_json::to_string_pretty(&decision).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            2
        }
    }
}
