//! The policy engine (docs/rules.md §1–4): pure functions from a transfer, the exporter's ledger sums and the approvals to a decision.
//!
//! # Layout
//! - [`transfer`]: [`Transfer`] (exporter, recipient, fields, persons, [`Ruleset`], direction): the
//!   input every other module reads, depending on none of them.
//! - [`engine`]: the export tables `CN2024`/`CN2022` and the domestic table; [`assess`].
//! - [`decision`]: [`RuleId`], [`Mechanism`], [`Action`], [`Decision`] and the [`HoldRequirement`] of a held transfer.
//! - [`approvals`]: [`Approval`], applicability, validity and the closest candidate.
//! - [`counting`]: the counting [`Window`] ([`Transfer::window`]), ledger sums and `*_after` arithmetic.
//! - [`calendar`]: Asia/Shanghai days (fixed UTC+8).
//! - [`config`]: [`PolicyConfig`], thresholds, windows and validity periods.
//! - [`assess_input`]: the JSON format of `bth-gateway assess`; [`assess_json`].
//!
//! The server calls [`assess`] with the sums of the exporter's ledger inside
//! [`Transfer::window`] and the exporter's approvals; the `assess` command calls [`assess_json`].
//! Nothing here does I/O.

pub mod approvals;
pub mod assess_input;
pub mod calendar;
pub mod config;
pub mod counting;
pub mod decision;
pub mod engine;
pub mod transfer;

pub use approvals::{Approval, ApprovalCheck, ApprovalOutcome, ApprovalType, Scope, ScopeMiss};
pub use assess_input::{assess_json, assess_json_with, AssessError, AssessInput, Assessment, DecisionJson};
pub use config::{PolicyConfig, TablePolicy, TableRules};
pub use counting::{Counts, HistoryEntry, Persons, Window, WindowTotals};
pub use decision::{Action, Decision, Direction, Fired, HoldRequirement, Mechanism, RuleId};
pub use engine::assess;
pub use transfer::{Exemption, ExemptionClaim, Exporter, Field, Recipient, Ruleset, Transfer};
