//! `bth-gateway demo`: the whole story against a real gateway on loopback — publish, grant,
//! masked domestic pull, an export held until an officer records a security assessment, and the
//! pull's receipt verified offline.

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::config::{Config, Overrides};
use crate::domain::classification::Level;
use crate::domain::ids::ParticipantId;
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::pb::{self, pull_response::Msg};
use crate::pki::{self, LeafKind, Pem};
use crate::translog::{merkle, note};
use crate::wire::RowBatch;

/// Districts and fields of Tianjin's service outsourcing (the 2020 implementation opinion).
const DISTRICTS: &[&str] = &["滨海新区", "和平区", "河西区", "南开区", "西青区", "东丽区"];
const FIELDS: &[&str] = &["医药研发", "工业设计", "会计服务", "法律服务", "软件开发", "数据处理"];

struct Clients {
    catalog: pb::catalog_client::CatalogClient<Channel>,
    publishing: pb::publishing_client::PublishingClient<Channel>,
    sharing: pb::sharing_client::SharingClient<Channel>,
    exchange: pb::exchange_client::ExchangeClient<Channel>,
    oversight: pb::oversight_client::OversightClient<Channel>,
}

async fn connect(addr: std::net::SocketAddr, ca: &Pem, leaf: &Pem) -> anyhow::Result<Clients> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .identity(Identity::from_pem(&leaf.cert, &leaf.key))
        .domain_name("localhost");
    let ch = Channel::from_shared(format!("https://{addr}"))?.tls_config(tls)?.connect().await?;
    Ok(Clients {
        catalog: pb::catalog_client::CatalogClient::new(ch.clone()),
        publishing: pb::publishing_client::PublishingClient::new(ch.clone()),
        sharing: pb::sharing_client::SharingClient::new(ch.clone()),
        exchange: pb::exchange_client::ExchangeClient::new(ch.clone()),
        oversight: pb::oversight_client::OversightClient::new(ch),
    })
}

fn participant(
    id: &str,
    name: &str,
    kind: ParticipantKind,
    rt: RecipientType,
    region: &str,
    roles: &[Role],
) -> Participant {
    Participant {
        id: ParticipantId::parse(id).expect("a valid id"),
        display_name: name.into(),
        kind,
        recipient_type: rt,
        region: Region::parse(region).expect("a valid region"),
        in_tianjin_ftz: false,
        roles: roles.iter().copied().collect(),
        clearance: Level::G3,
        status: ParticipantStatus::Active,
    }
}

fn field(name: &str, ty: pb::FieldType, level: pb::Level, pi: pb::Pi, mask: Option<pb::Mask>) -> pb::Field {
    pb::Field {
        name: name.into(),
        r#type: ty as i32,
        level: level as i32,
        pi: pi as i32,
        share: pb::Share::Conditional as i32,
        default_mask: mask,
        ..Default::default()
    }
}

/// Runs the story in `dir` (a fresh working directory is created there). Prints each step.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    super::init::run(dir).await.context("initialising the demo directory")?;
    let config = Config::load(dir, None, |_| None, &Overrides::default())?;
    let gw = crate::server::gateway(&config).await?;
    let ca = pki::read_ca(&dir.join("certs"))?;
    let people = [
        participant(
            "tj-stats",
            "天津市统计局",
            ParticipantKind::StateOrgan,
            RecipientType::StatisticsAgency,
            "CN-TJ",
            &[Role::Publisher],
        ),
        participant(
            "tj-commerce",
            "天津市商务局",
            ParticipantKind::StateOrgan,
            RecipientType::GovDept,
            "CN-TJ",
            &[Role::Consumer],
        ),
        participant("hk-univ", "香港大学", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer]),
        participant(
            "tj-cac-officer",
            "数据出境安全官",
            ParticipantKind::StateOrgan,
            RecipientType::GovDept,
            "CN-TJ",
            &[Role::Officer],
        ),
    ];
    let mut leaves = Vec::new();
    for p in &people {
        crate::service::participants::register_as(&gw, "local:demo", p.clone()).await?;
        leaves.push(pki::issue(&ca, p.id.as_str(), LeafKind::Client)?);
    }
    println!("1. registered {} participants and issued their certificates", people.len());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tls = crate::server::read_tls(&config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = gw.clone();
    let server = tokio::spawn(async move {
        crate::server::run(listener, served, &tls, &crate::server::Settings::from(&config), async {
            let _ = stopped.await;
        })
        .await
    });
    println!("2. gateway serving on {addr} (mutual TLS)");
    let (mut stats, mut commerce, mut hk, mut officer) = (
        connect(addr, &ca, &leaves[0]).await?,
        connect(addr, &ca, &leaves[1]).await?,
        connect(addr, &ca, &leaves[2]).await?,
        connect(addr, &ca, &leaves[3]).await?,
    );

    use pb::{FieldType as T, Level as L, Pi};
    let partial = pb::Mask { kind: pb::MaskKind::Partial as i32, keep_first: 1, ..Default::default() };
    let hash = pb::Mask { kind: pb::MaskKind::Hash as i32, ..Default::default() };
    stats
        .catalog
        .register_dataset(pb::RegisterDatasetRequest {
            id: "service-outsourcing-2025".into(),
            title: "天津服务外包企业 2025".into(),
            description: "Service-outsourcing enterprises by district and field".into(),
            government_data: true,
            fields: vec![
                field("enterprise", T::String, L::G2, Pi::None, None),
                field("district", T::String, L::G1, Pi::None, None),
                field("field", T::String, L::G1, Pi::None, None),
                field("contract_value", T::Decimal, L::G2, Pi::None, None),
                field("contact", T::String, L::G3, Pi::Pi, Some(partial)),
                field("contact_id", T::String, L::G3, Pi::Pi, Some(hash)),
            ],
            person_key_field: "contact_id".into(),
            contributor_key_field: "enterprise".into(),
            holding_key_field: String::new(),
        })
        .await?;
    let n = 1500u32;
    let col = |f: &dyn Fn(u32) -> String| pb::Column { strings: (0..n).map(f).collect(), ..Default::default() };
    let batch = RowBatch::from_columns(
        n,
        vec![
            col(&|i| format!("津外包{i:04}有限公司")),
            col(&|i| DISTRICTS[i as usize % DISTRICTS.len()].to_owned()),
            col(&|i| FIELDS[i as usize % FIELDS.len()].to_owned()),
            col(&|i| format!("{}.{:02}", 100_000 + i * 137, i % 100)),
            col(&|i| format!("联系人{i}")),
            col(&|i| format!("1201{i:014}")),
        ],
    );
    let header = pb::PublishRequest {
        msg: Some(pb::publish_request::Msg::Header(pb::PublishHeader {
            dataset_id: "service-outsourcing-2025".into(),
            idempotency_key: "2025-annual".into(),
        })),
    };
    let batch = pb::PublishRequest { msg: Some(pb::publish_request::Msg::Batch(batch)) };
    let v = stats
        .publishing
        .publish(tokio_stream::iter(vec![header, batch]))
        .await?
        .into_inner()
        .version
        .unwrap_or_default();
    println!("3. tj-stats published version {} ({} rows, sha256 {}…)", v.version, v.rows, &v.sha256[..16]);

    for c in [&mut commerce, &mut hk] {
        let g = c
            .sharing
            .request_grant(pb::RequestGrantRequest {
                r#use: pb::GrantUse::Rows as i32,
                dataset_id: "service-outsourcing-2025".into(),
                fields: vec!["enterprise".into(), "district".into(), "contact".into(), "contact_id".into()],
                purpose: "service outsourcing statistics".into(),
                legal_basis: "统计法 第七条".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        stats
            .sharing
            .decide_grant(pb::DecideGrantRequest {
                grant_id: g.id,
                decision: Some(pb::decide_grant_request::Decision::Approve(pb::Approve::default())),
            })
            .await?;
    }
    println!("4. tj-commerce and hk-univ requested grants; tj-stats approved them");

    let req = pb::PullRequest { dataset_id: "service-outsourcing-2025".into(), ..Default::default() };
    let mut stream = commerce.exchange.pull(req.clone()).await?.into_inner();
    let (mut receipt, mut first, mut rows) = (String::new(), None, 0);
    while let Some(m) = stream.message().await? {
        match m.msg {
            Some(Msg::Header(h)) => {
                let masks: Vec<String> = h
                    .fields
                    .iter()
                    .map(|f| {
                        format!(
                            "{}:{}",
                            f.name,
                            f.mask
                                .as_ref()
                                .map_or("?", |m| pb::MaskKind::try_from(m.kind).map_or("?", |k| k.as_str_name()))
                        )
                    })
                    .collect();
                println!(
                    "5. tj-commerce pulls (domestic, {}): {}",
                    h.decision.map(|d| d.rules.join(",")).unwrap_or_default(),
                    masks.join(" ")
                );
                receipt = h.decision_receipt;
            }
            Some(Msg::Batch(b)) if first.is_none() => first = Some(b.decode()?),
            Some(Msg::Trailer(t)) => rows = t.rows,
            _ => {}
        }
    }
    if let Some(b) = first {
        println!(
            "   first row: {} | {} | {} | {}…",
            b.columns[0].strings[0],
            b.columns[1].strings[0],
            b.columns[2].strings[0],
            &b.columns[3].strings[0][..16]
        );
    }
    println!("   {rows} rows delivered");

    let (index, proof, signed) = note::parse_receipt(&receipt)?;
    let checkpoint = note::Verifier::new(gw.log.verifier_key())?.verify_note(&signed)?;
    let leaf = gw.store.leaves(index, 1).await?.pop().context("the decision leaf")?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(leaf.json.as_bytes()),
        index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    )?;
    println!(
        "6. the pull's decision is leaf {index}; its receipt verifies offline against checkpoint {} signed by {}",
        checkpoint.size,
        gw.log.verifier_key()
    );

    let err = hk.exchange.pull(req.clone()).await.err().context("the export should be held")?;
    let info = tonic_types::StatusExt::get_details_error_info(&err).context("error details")?;
    println!(
        "7. hk-univ pulls (export to HK): {:?} {} — hold {}",
        err.code(),
        info.metadata["rules"],
        info.metadata["hold_id"]
    );
    let sa = officer
        .oversight
        .record_approval(pb::RecordApprovalRequest {
            r#type: "CAC_SA".into(),
            exporter: "tj-stats".into(),
            reference: "国网信 数出评 2026-017".into(),
            issued: "2026-01-15".into(),
            scope: Some(pb::ApprovalScope { destinations: vec!["HK".into()], ..Default::default() }),
            ..Default::default()
        })
        .await?
        .into_inner();
    officer
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: info.metadata["hold_id"].clone(),
            resolution: Some(pb::resolve_hold_request::Resolution::ReleaseWithApproval(sa.id.clone())),
        })
        .await?;
    println!("8. tj-cac-officer recorded security assessment {} and released the hold", sa.id);
    let mut stream = hk.exchange.pull(req).await?.into_inner();
    while let Some(m) = stream.message().await? {
        if let Some(Msg::Trailer(t)) = m.msg {
            println!("9. hk-univ retries: {} rows delivered under {}", t.rows, sa.id);
        }
    }
    let _ = stop.send(());
    server.await??;
    println!("10. gateway drained and stopped; everything is in {}", dir.display());
    Ok(())
}
