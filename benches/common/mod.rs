//! What the benchmarks share: the 10-field dataset, its rows, participants, mTLS clients.

#![allow(dead_code, reason = "each benchmark uses a different part")]

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::ParticipantId;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::pb::{self, exchange_client::ExchangeClient, pull_response::Msg};
use bth_gateway::pki::Pem;
use bth_gateway::wire::DecodedBatch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Rows per stored chunk.
pub const BATCH: u32 = 8192;

/// `n` rows of the benchmark dataset from row `offset`.
pub fn rows(n: u32, offset: u32) -> DecodedBatch {
    let r: Vec<u32> = (offset..offset + n).collect();
    let s = |f: &dyn Fn(u32) -> String| pb::Column { strings: r.iter().map(|&i| f(i)).collect(), ..Default::default() };
    let i = |f: &dyn Fn(u32) -> i64| pb::Column { ints: r.iter().map(|&x| f(x)).collect(), ..Default::default() };
    DecodedBatch {
        row_count: n,
        columns: vec![
            s(&|i| format!("enterprise-{i:07}")),
            s(&|i| ["Binhai", "Heping", "Nankai", "Hexi"][i as usize % 4].to_owned()),
            s(&|i| format!("contact {i}")),
            s(&|i| format!("1381{:07}", i)),
            i(&|i| i64::from(i) * 7 % 5000),
            i(&|i| 2000 + i64::from(i % 25)),
            i(&|i| i64::from(i) * 131),
            s(&|i| format!("{}.{:02}", i * 3, i % 100)),
            s(&|i| format!("{}.{:02}", i / 7, i % 97)),
            s(&|i| format!("{}.5", i % 1000)),
        ],
    }
}

/// The benchmark dataset: 4 strings, 3 integers, 3 decimals, all G2, no masks.
pub fn dataset() -> bth_gateway::domain::dataset::Dataset {
    use bth_gateway::domain::classification::{Classification, Pi, Share};
    use bth_gateway::domain::dataset::{Dataset, FieldDef, FieldName, FieldType};
    use bth_gateway::domain::mask::Mask;
    let f = |name: &str, ty: FieldType| FieldDef {
        name: FieldName::parse(name).unwrap(),
        ty,
        class: Classification::new(Level::G2, Pi::None, false, Share::Conditional, None),
        default_mask: Mask::None,
        description: std::string::String::new(),
        nullable: false,
    };
    use FieldType::{Decimal, Int64, String as Text};
    Dataset {
        id: bth_gateway::domain::ids::DatasetId::parse("bench").unwrap(),
        owner: ParticipantId::parse("owner").unwrap(),
        title: "bench".into(),
        description: std::string::String::new(),
        government_data: false,
        fields: vec![
            f("enterprise", Text),
            f("district", Text),
            f("contact", Text),
            f("phone", Text),
            f("employees", Int64),
            f("founded", Int64),
            f("output", Int64),
            f("revenue", Decimal),
            f("profit", Decimal),
            f("tax", Decimal),
        ],
        person_key_field: None,
        contributor_key_field: None,
        holding_key_field: None,
        registered_at: chrono::Utc::now(),
    }
}

/// A Tianjin participant with `roles`.
pub fn participant(id: &str, roles: &[Role]) -> Participant {
    Participant {
        id: ParticipantId::parse(id).unwrap(),
        display_name: id.into(),
        kind: ParticipantKind::StateOrgan,
        recipient_type: RecipientType::GovDept,
        region: Region::parse("CN-TJ").unwrap(),
        in_tianjin_ftz: false,
        roles: roles.iter().copied().collect(),
        clearance: Level::G4,
        status: ParticipantStatus::Active,
    }
}

/// An Exchange client over mTLS.
pub async fn client(addr: std::net::SocketAddr, ca: &Pem, leaf: &Pem) -> ExchangeClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .identity(Identity::from_pem(&leaf.cert, &leaf.key))
        .domain_name("localhost");
    let channel =
        Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    ExchangeClient::new(channel).max_decoding_message_size(64 << 20)
}

/// Pulls the benchmark dataset once; returns rows received.
pub async fn pull_once(c: &mut ExchangeClient<Channel>) -> u64 {
    pull_dataset(c, "bench").await
}

/// Pulls `dataset` once; returns rows received.
pub async fn pull_dataset(c: &mut ExchangeClient<Channel>, dataset: &str) -> u64 {
    let mut s =
        c.pull(pb::PullRequest { dataset_id: dataset.into(), ..Default::default() }).await.unwrap().into_inner();
    let mut rows = 0u64;
    while let Some(m) = s.message().await.unwrap() {
        if let Some(Msg::Batch(b)) = m.msg {
            rows += u64::from(b.split().unwrap().0);
        }
    }
    rows
}

/// Pulls `dataset` once; returns the batches received.
pub async fn pull_batches(c: &mut ExchangeClient<Channel>, dataset: &str) -> Vec<bth_gateway::wire::RowBatch> {
    let mut s =
        c.pull(pb::PullRequest { dataset_id: dataset.into(), ..Default::default() }).await.unwrap().into_inner();
    let mut batches = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        if let Some(Msg::Batch(b)) = m.msg {
            batches.push(b);
        }
    }
    batches
}

/// Serves `gw` over mutual TLS on a fresh loopback port (messages up to 64 MiB) for the rest of
/// the run; returns its address.
pub async fn serve(gw: bth_gateway::service::Gateway, tls: bth_gateway::server::TlsPem) -> std::net::SocketAddr {
    use bth_gateway::server;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let settings = server::Settings { max_message_bytes: 64 << 20, ..Default::default() };
        server::run(listener, gw, &tls, &settings, std::future::pending()).await
    });
    addr
}
