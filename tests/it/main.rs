//! Integration tests: a real gateway per test on port 0, its own database, certificates
//! generated for the test, typed clients per participant over mutual TLS.

mod harness;

mod audit;
mod backup;
mod bad_input;
mod catalog;
mod certs_fixtures;
mod cli;
mod cli_guard;
mod exchange;
mod export;
mod hostile;
mod identity;
mod kill_loop;
mod maintenance;
mod publishing;
mod replicas;
mod reports;
mod review;
mod sharing;
mod tables;
mod witness;
