//! gRPC adapters: identify the caller, convert the request, call one use case, convert back.

pub mod admin;
pub mod audit;
pub mod catalog;
pub mod convert;
pub mod exchange;
pub mod identity;
pub mod monitoring;
pub mod oversight;
pub mod peer;
pub mod publishing;
pub mod reports;
pub mod review;
pub mod sharing;
pub mod status;
