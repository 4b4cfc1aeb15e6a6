//! The `bth-gateway` binary: parse the command line, run the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = bth_gateway::cli::Cli::parse();
    match bth_gateway::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
