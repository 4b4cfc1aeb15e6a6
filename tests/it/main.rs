//! Integration tests: a real gateway per test on port 0, its own database, certificates
//! generated for the test, typed clients per participant over mutual TLS.

mod harness;

mod audit;
mod catalog;
mod cli;
mod exchange;
mod export;
mod identity;
mod publishing;
mod replicas;
mod sharing;
