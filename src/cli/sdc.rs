//! `bth-gateway sdc FILE`: statistical disclosure control on one JSON table description.

use std::path::Path;

/// Prints the cells JSON and returns 0 (a refused table included: `refused` says why), or
/// prints a one-line error naming the key and returns 2.
pub fn run(file: &Path) -> i32 {
    let input = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: reading {}: {e}", file.display());
            return 2;
        }
    };
    match crate::sdc::input::sdc_json(&input) {
        Ok(output) => match serde_json::to_string_pretty(&output) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error: rendering the cells: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            2
        }
    }
}
