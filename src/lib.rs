//! bth-gateway: the gRPC broker every transfer of Tianjin's statistical data passes through.
//!
//! # Layout
//!
//! Dependencies point one way, top to bottom:
//!
//! | module | role |
//! |---|---|
//! | [`cli`] | one function per subcommand (`init`, `serve`, `certs`, `participants`, `assess`, `sdc`, `audit`, `backup`, `demo`) |
//! | [`server`] | assembly: TLS, services, health, reflection, graceful shutdown |
//! | [`config`] | configuration: file, then `BTH_*` environment, then flags |
//! | [`grpc`] | adapters: identity from the client certificate, proto ↔ domain, the one `Status` mapping |
//! | [`service`] | use cases: catalog, publishing, sharing, exchange, tables, assessment, oversight, audit, participants |
//! | [`policy`] | classification, domestic and export tables, approvals, counting (pure) |
//! | [`masking`] | masks (pure) |
//! | [`sdc`] | statistical disclosure control: tables, primary rules, secondary suppression, the interval audit (pure) |
//! | [`wire`] | `RowBatch` carried pre-encoded: stored chunks go out without per-row work |
//! | [`log`] | the transfer log running: the sequencer (group commit, integration, signed checkpoints, receipts), proofs served from the stored tree |
//! | [`translog`] | RFC 6962 Merkle tree and its compact range, signed notes, canonical JSON, verification (pure) |
//! | [`domain`] | ids, classification, participants, datasets, grants, masks, records, standing reports' schedules |
//! | [`store`] | the storage contract (one trait per concern), one SQL implementation with its SQLite and PostgreSQL dialects, the chunk cache |
//! | [`pki`] | the development PKI written by `init` and `certs issue` |
//!
//! `domain`, `policy`, `masking`, `sdc` and `translog` import neither tonic nor sqlx nor tokio; the
//! sequencer ([`log`]) reaches storage only through the `Store` trait.

pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod log;
pub mod masking;
pub mod pki;
pub mod policy;
/// Replay of the transfer log: state rebuilt from the records, every decision run again (docs/replay.md).
pub mod replay;
pub mod sdc;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod translog;
pub mod wire;
pub mod witness;

/// Generated protobuf and gRPC code for `bth.gateway.v1`.
#[allow(clippy::all, missing_docs, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("bth.gateway.v1");

    /// The encoded `FileDescriptorSet` of every proto, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bth_descriptor");
}
