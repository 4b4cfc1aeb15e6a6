//! Statistical tables end to end: TABLES grants, Tabulate and its preview, suppression, the
//! release ledger (differencing), the assessment of a table as aggregate data, bad input.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb;
use bth_gateway::wire::RowBatch;
use ring::digest;
use tonic::Code;

use crate::harness::*;

/// `enterprise` (the contributor key) and `revenue` are identifiable survey material.
pub fn firms(id: &str, government_data: bool) -> pb::RegisterDatasetRequest {
    use pb::{FieldType as T, Level as L, Pi};
    let micro = |mut f: pb::Field| {
        f.stat_micro = true;
        f
    };
    pb::RegisterDatasetRequest {
        id: id.into(),
        title: "Enterprise survey".into(),
        government_data,
        fields: vec![
            micro(field("enterprise", T::String, L::G4, Pi::None, None)),
            field("district", T::String, L::G2, Pi::None, None),
            field("age", T::String, L::G2, Pi::None, None),
            field("reported", T::Date, L::G2, Pi::None, None),
            micro(field("revenue", T::Int64, L::G4, Pi::None, None)),
        ],
        contributor_key_field: "enterprise".into(),
        ..Default::default()
    }
}

/// `(enterprise, district, age, reported, revenue)`.
pub type Row<'a> = (&'a str, &'a str, &'a str, &'a str, i64);

/// One row per tuple.
pub fn rows(r: &[Row<'_>]) -> RowBatch {
    let s = |f: &dyn Fn(&Row<'_>) -> String| pb::Column { strings: r.iter().map(f).collect(), ..Default::default() };
    RowBatch::from_columns(
        r.len() as u32,
        vec![
            s(&|x| x.0.to_owned()),
            s(&|x| x.1.to_owned()),
            s(&|x| x.2.to_owned()),
            s(&|x| x.3.to_owned()),
            pb::Column { ints: r.iter().map(|x| x.4).collect(), ..Default::default() },
        ],
    )
}

/// Firms e1..e10 with revenue 100·i: A holds e1..e5 (e1 reports twice, the second time 50),
/// B e6..e9, C e10 alone.
fn small_rows() -> RowBatch {
    let mut r = Vec::new();
    let names: Vec<String> = (1..=10).map(|i| format!("e{i}")).collect();
    for i in 1..=10usize {
        let district = match i {
            1..=5 => "A",
            6..=9 => "B",
            _ => "C",
        };
        r.push((names[i - 1].as_str(), district, "young", "2024-02-10", 100 * i as i64));
    }
    r.push(("e1", "A", "young", "2024-05-01", 50));
    rows(&r)
}

/// A: 4 young and 1 old firm; B: 3 and 3; C: 4 and 4.
pub fn ages_rows() -> RowBatch {
    let names: Vec<String> = (1..=19).map(|i| format!("f{i}")).collect();
    let mut r = Vec::new();
    let mut n = 0;
    for (district, young, old) in [("A", 4, 1), ("B", 3, 3), ("C", 4, 4)] {
        for k in 0..young + old {
            let age = if k < young { "young" } else { "old" };
            r.push((names[n].as_str(), district, age, "2024-03-01", 1000));
            n += 1;
        }
    }
    rows(&r)
}

pub async fn tables_grant(
    owner: &mut Client,
    consumer: &mut Client,
    dataset: &str,
    dims: &[&str],
    measures: &[&str],
) -> pb::Grant {
    let g = consumer
        .sharing
        .request_grant(pb::RequestGrantRequest {
            dataset_id: dataset.into(),
            r#use: pb::GrantUse::Tables as i32,
            dimensions: dims.iter().map(|d| d.to_string()).collect(),
            measures: measures.iter().map(|d| d.to_string()).collect(),
            purpose: "regional statistics".into(),
            legal_basis: "统计法 Art. 7".into(),
            statistical_purpose: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.r#use, pb::GrantUse::Tables as i32);
    owner
        .sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            decision: Some(pb::decide_grant_request::Decision::Approve(pb::Approve::default())),
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn dim(field: &str) -> pb::TableDimension {
    pb::TableDimension { field: field.into(), ..Default::default() }
}

pub fn count_of(dataset: &str, dims: Vec<pb::TableDimension>) -> pb::TabulateRequest {
    pb::TabulateRequest {
        dataset_id: dataset.into(),
        dimensions: dims,
        statistic: pb::TableStatistic::Count as i32,
        ..Default::default()
    }
}

/// Everything one Tabulate returned.
struct Tabulated {
    header: pb::TableHeader,
    cells: Vec<pb::TableCell>,
    trailer: pb::TableTrailer,
}

impl Tabulated {
    fn cell(&self, codes: &[&str]) -> &pb::TableCell {
        self.cells.iter().find(|c| c.codes == codes).unwrap_or_else(|| panic!("no cell {codes:?}"))
    }

    fn published(&self, codes: &[&str]) -> bool {
        self.cell(codes).status == pb::CellStatus::Published as i32
    }
}

async fn tabulate(c: &mut Client, req: pb::TabulateRequest) -> Result<Tabulated, tonic::Status> {
    use pb::tabulate_response::Msg;
    let mut stream = c.exchange.tabulate(req).await?.into_inner();
    let (mut header, mut cells, mut trailer) = (None, Vec::new(), None);
    while let Some(m) = stream.message().await? {
        match m.msg.unwrap() {
            Msg::Header(h) => header = Some(h),
            Msg::Cells(c) => cells.extend(c.cells),
            Msg::Trailer(t) => trailer = Some(t),
        }
    }
    Ok(Tabulated { header: header.unwrap(), cells, trailer: trailer.expect("a trailer") })
}

async fn with_small(t: &TestGateway) -> (Client, Client) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("firms", true)).await.unwrap();
    publish(&mut owner, "firms", "v1", vec![small_rows()]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    tables_grant(&mut owner, &mut consumer, "firms", &["district", "age", "reported"], &["revenue"]).await;
    (owner, consumer)
}

#[tokio::test]
async fn a_tables_grant_releases_a_table_whose_values_match_a_hand_computation_and_suppressed_cells_carry_none() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = with_small(&t).await;

    let count = tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.unwrap();
    assert_eq!(count.header.dimensions, ["district"]);
    assert_eq!(count.header.decision.as_ref().unwrap().action, "PASS");
    let codes: Vec<_> = count.cells.iter().map(|c| c.codes[0].as_str()).collect();
    assert_eq!(codes, ["Total", "A", "B", "C"]);
    // 10 firms (e1 reported twice: one contributor), A 5, B 4, C 1.
    assert_eq!((count.cell(&["Total"]).value, count.cell(&["Total"]).contributors), (Some(10.0), Some(10)));
    assert_eq!((count.cell(&["A"]).value, count.cell(&["A"]).contributors), (Some(5.0), Some(5)));
    // C has one firm (< 3): primary; B would give it away (Total − A − B): secondary.
    let c = count.cell(&["C"]);
    assert_eq!((c.status, c.value, c.contributors), (pb::CellStatus::Primary as i32, None, None));
    let b = count.cell(&["B"]);
    assert_eq!((b.status, b.value, b.contributors), (pb::CellStatus::Secondary as i32, None, None));
    assert_eq!((count.trailer.cells, count.trailer.published), (4, 2));

    // The trailer's digest: the published cells' encodings, each after its length.
    let mut d = digest::Context::new(&digest::SHA256);
    for c in count.cells.iter().filter(|c| c.status == pb::CellStatus::Published as i32) {
        let bytes = prost::Message::encode_to_vec(c);
        d.update(&(bytes.len() as u64).to_be_bytes());
        d.update(&bytes);
    }
    let sha = hex::encode(d.finish());
    assert_eq!(count.trailer.sha256, sha);
    t.verify_receipt(
        &count.header.decision_receipt,
        &["table.decision", &count.header.table_id, &sha, "\"published\":2"],
    )
    .await;
    t.verify_receipt(&count.trailer.completion_receipt, &["table.completed", &count.header.table_id, "COMPLETED"])
        .await;
    // The records beside the receipts verify offline, with the verifier key alone.
    t.verify_standalone(&count.header.decision_record, &count.header.decision_receipt, &["table.decision", &sha]);
    t.verify_standalone(&count.trailer.completion_record, &count.trailer.completion_receipt, &["table.completed"]);
    // The decision record holds no value and no suppressed cell's coordinates.
    let leaf = t.strings("SELECT json FROM records WHERE kind = 'table.decision'").await.pop().unwrap();
    assert!(!leaf.contains("\"C\"") && !leaf.contains("\"B\""), "{leaf}");
    assert!(leaf.contains("\"parameters_hmac\""), "{leaf}");
    assert!(!leaf.contains("min_frequency"), "{leaf}");
    // The facts the rules read, each with its latest record's leaf (issue 12).
    let facts: Vec<String> = serde_json::from_str::<serde_json::Value>(&leaf).unwrap()["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fact"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(facts, ["policy", "participant", "participant", "dataset", "version", "grant"], "{leaf}");

    // SUM: e1 150, e2..e5 200..500 (A = 1550), e1..e10 = 5550.
    let sum = tabulate(
        &mut consumer,
        pb::TabulateRequest {
            statistic: pb::TableStatistic::Sum as i32,
            measure: "revenue".into(),
            ..count_of("firms", vec![dim("district")])
        },
    )
    .await
    .unwrap();
    assert_eq!(sum.cell(&["Total"]).value, Some(5550.0));
    assert_eq!(sum.cell(&["Total"]).contributors, Some(10));
    assert_eq!(sum.cell(&["C"]).status, pb::CellStatus::Primary as i32);
    // C's one firm knows its own revenue: with A published, B + C = Total − A would give it B.
    assert!(!sum.published(&["B"]) && !sum.published(&["A"]));
    assert!(sum.cells.iter().skip(1).all(|c| c.value.is_none() && c.contributors.is_none()));

    // Dates by quarter: both reports fall in 2024-Q1 and 2024-Q2.
    let quarters = tabulate(
        &mut consumer,
        count_of("firms", vec![pb::TableDimension { period: pb::DatePeriod::PeriodQuarter as i32, ..dim("reported") }]),
    )
    .await
    .unwrap();
    let codes: Vec<_> = quarters.cells.iter().map(|c| c.codes[0].as_str()).collect();
    assert_eq!(codes, ["Total", "2024-Q1", "2024-Q2"]);
    // Q2 has one report (primary); Total and Q1 together would give it: one of them goes.
    assert!(!(quarters.published(&["Total"]) && quarters.published(&["2024-Q1"])));
    for c in quarters.cells.iter().filter(|c| c.status == pb::CellStatus::Published as i32) {
        assert_eq!(c.value, Some(10.0));
    }
    assert!(!quarters.published(&["2024-Q2"]), "one firm in Q2");
}

#[tokio::test]
async fn a_hierarchy_adds_its_groups_as_margins() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = with_small(&t).await;
    let groups = vec![
        pb::TableGroup { name: "AB".into(), children: vec!["A".into(), "B".into()] },
        pb::TableGroup { name: "rest".into(), children: vec!["C".into()] },
    ];
    let table = tabulate(&mut consumer, count_of("firms", vec![pb::TableDimension { groups, ..dim("district") }]))
        .await
        .unwrap();
    let codes: Vec<_> = table.cells.iter().map(|c| c.codes[0].as_str()).collect();
    assert_eq!(codes, ["Total", "AB", "rest", "A", "B", "C"]);
    // rest = C (one firm): both primary; AB = Total − C would give C away; A is published,
    // and B (= Total − A − C) goes with C.
    assert_eq!(table.cell(&["rest"]).status, pb::CellStatus::Primary as i32);
    assert_eq!(table.cell(&["C"]).status, pb::CellStatus::Primary as i32);
    assert_eq!(table.cell(&["A"]).value, Some(5.0));
    assert!(!table.published(&["AB"]) && !table.published(&["B"]));
    assert_eq!(table.cell(&["Total"]).value, Some(10.0));
}

#[tokio::test]
async fn a_pull_under_a_tables_grant_is_permission_denied() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = with_small(&t).await;
    let err = pull(&mut consumer, pull_req("firms")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let g = consumer.sharing.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner().grants;
    let err =
        pull(&mut consumer, pb::PullRequest { grant_id: g[0].id.clone(), ..pull_req("firms") }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("TABLES grant"), "{}", err.message());
}

#[tokio::test]
async fn a_table_of_a_dataset_without_a_tables_grant_is_refused() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("firms", true)).await.unwrap();
    publish(&mut owner, "firms", "v1", vec![small_rows()]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G4).await;
    granted(&mut owner, &mut consumer, "firms", &["district"], pb::Approve::default()).await;
    let err = tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.err().unwrap();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("no TABLES grant"), "{}", err.message());
    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger").await, 0);
    // Probing for tables is counted for the officers as refused pulls are: one record per
    // (participant, dataset, reason) and flush.
    for _ in 0..4 {
        tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.err().unwrap();
    }
    bth_gateway::service::maintenance::flush_refusals(&t.gw).await.unwrap();
    let refused =
        t.strings("SELECT json FROM records WHERE kind = 'access.refused' AND recipient = 'tj-commerce'").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("\"attempts\":5"), "{}", refused[0]);
}

/// `wide`: `n` districts × `n` ages, three firms in every inner cell — a table of `(n + 1)²`
/// cells, every one safe. Returns the owner and the TABLES grant of `tj-commerce`.
async fn with_wide(t: &TestGateway, n: usize) -> (Client, pb::Grant) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("wide", false)).await.unwrap();
    let names: Vec<(String, String, String)> =
        (0..n * n * 3).map(|i| (format!("w{i}"), format!("d{:03}", i / 3 % n), format!("a{:03}", i / 3 / n))).collect();
    let r: Vec<Row<'_>> = names.iter().map(|(e, d, a)| (e.as_str(), d.as_str(), a.as_str(), "2024-01-01", 1)).collect();
    publish(&mut owner, "wide", "v1", vec![rows(&r)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G4).await;
    let grant = tables_grant(&mut owner, &mut consumer, "wide", &["district", "age"], &[]).await;
    (owner, grant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_grant_stops_a_running_table_with_permission_denied_and_a_revoked_record() {
    use pb::tabulate_response::Msg;
    let t = TestGateway::start_with(bth_gateway::service::Limits { chunk_rows: 4096, ..Default::default() }).await;
    let (mut owner, grant) = with_wide(&t, 80).await;
    let total = 81 * 81;
    // A recipient that reads the header and then stops reading: 1 KiB of stream window.
    let channel = t
        .endpoint("tj-commerce")
        .initial_stream_window_size(1024)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await
        .unwrap();
    let mut c = pb::exchange_client::ExchangeClient::new(channel).max_decoding_message_size(64 << 20);
    let mut s = c.tabulate(count_of("wide", vec![dim("district"), dim("age")])).await.unwrap().into_inner();
    assert!(matches!(s.message().await.unwrap().and_then(|m| m.msg), Some(Msg::Header(_))));
    owner
        .sharing
        .revoke_grant(pb::RevokeGrantRequest { grant_id: grant.id.clone(), reason: "withdrawn".into() })
        .await
        .unwrap();
    // The re-check runs every second; give it three.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut received = 0usize;
    let status = loop {
        match s.message().await {
            Ok(Some(m)) => match m.msg {
                Some(Msg::Cells(cells)) => received += cells.cells.len(),
                other => panic!("the table went on after its grant was revoked: {other:?}"),
            },
            Ok(None) => panic!("the stream ended without a status after {received} cells"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&grant.id), "{}", status.message());
    assert!(received < total, "{received} of {total} cells");
    // The completion says REVOKED and counts exactly the cells received.
    let revoked = t.strings("SELECT json FROM records WHERE kind = 'table.completed' AND action = 'REVOKED'").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].contains(&format!("\"cells\":{received},")), "{received} cells: {}", revoked[0]);
}

#[tokio::test]
async fn a_table_takes_one_of_the_callers_streaming_places() {
    // No place at all: the table is refused before anything is computed or recorded (a table
    // costs seconds of CPU, so a flood of them is bounded like a flood of pulls).
    let t = TestGateway::start_with(bth_gateway::service::Limits {
        max_pulls_per_participant: 0,
        ..bth_gateway::service::Limits::default()
    })
    .await;
    let (_owner, mut consumer) = with_small(&t).await;
    let err = tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.err().unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max_pulls_per_participant"), "{}", err.message());
    let err = consumer.exchange.preview_tabulate(count_of("firms", vec![dim("district")])).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'table.decision'").await, 0);
}

#[tokio::test]
async fn a_second_table_that_would_difference_the_first_is_suppressed_around_it() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("ages", true)).await.unwrap();
    publish(&mut owner, "ages", "v1", vec![ages_rows()]).await.unwrap();
    let mut first = t.consumer("tj-commerce", Level::G2).await;
    let mut fresh = t.consumer("tj-tax", Level::G2).await;
    for c in [&mut first, &mut fresh] {
        tables_grant(&mut owner, c, "ages", &["district", "age"], &[]).await;
    }

    // Counts by district: each district has at least 3 firms, every cell is published.
    let by_district = tabulate(&mut first, count_of("ages", vec![dim("district")])).await.unwrap();
    let values: Vec<_> = by_district.cells.iter().map(|c| c.value).collect();
    assert_eq!(values, [Some(19.0), Some(5.0), Some(6.0), Some(8.0)]);

    // The same for the young only: alone it is safe (4, 3, 4 young firms)...
    let young =
        || count_of("ages", vec![dim("district"), pb::TableDimension { filter: vec!["young".into()], ..dim("age") }]);
    let alone = tabulate(&mut fresh, young()).await.unwrap();
    assert_eq!(alone.cell(&["A", "young"]).value, Some(4.0));
    assert!(alone.cells.iter().all(|c| c.status == pb::CellStatus::Published as i32));

    // ...but after the first table, A's young count would give A's one old firm (5 − 4).
    match tabulate(&mut first, young()).await {
        Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}"),
        Ok(second) => {
            assert!(!second.published(&["A", "young"]) && !second.published(&["A", "Total"]));
            // Not a rule of its own (4 young firms pass): suppressed because of the first table.
            assert_eq!(second.cell(&["A", "young"]).status, pb::CellStatus::Secondary as i32);
            let derivable = ["Total", "B", "C"].iter().all(|d| second.published(&[d, "young"]));
            assert!(!derivable, "A's young count follows from the published young counts");
            assert!(second.cells.iter().all(|c| c.status == pb::CellStatus::Published as i32 || c.value.is_none()));
            t.verify_receipt(&second.header.decision_receipt, &["\"checked\":4"]).await;
        }
    }
}

#[tokio::test]
async fn a_table_of_survey_microdata_goes_to_a_hong_kong_research_partner_as_aggregate_data() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("census", false)).await.unwrap();
    let names: Vec<String> = (0..23).map(|i| format!("c{i}")).collect();
    let r: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), if i < 12 { "A" } else { "B" }, "young", "2024-01-01", 10))
        .collect();
    publish(&mut owner, "census", "v1", vec![rows(&r)]).await.unwrap();
    let mut hk = t
        .register("hk-univ", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer], Level::G4)
        .await;

    // The rows are survey microdata: X3 blocks them.
    granted(&mut owner, &mut hk, "census", &["enterprise", "district"], pb::Approve::default()).await;
    let err = pull(&mut hk, pull_req("census")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("X3"), "{}", err.message());

    // A table of them is aggregate: no X3, E1 allows it.
    tables_grant(&mut owner, &mut hk, "census", &["district"], &["revenue"]).await;
    let table = tabulate(&mut hk, count_of("census", vec![dim("district")])).await.unwrap();
    let d = table.header.decision.clone().unwrap();
    assert!(d.export);
    assert_eq!(d.action, "PASS");
    assert!(!d.rules.contains(&"X3".to_string()), "{:?}", d.rules);
    // Export rules: at least 10 firms a cell; 12 and 11 pass.
    let values: Vec<_> = table.cells.iter().map(|c| c.value).collect();
    assert_eq!(values, [Some(23.0), Some(12.0), Some(11.0)]);
    t.verify_receipt(&table.header.decision_receipt, &["table.decision", "\"export\":true", "\"rules\":[\"E1\"]"])
        .await;

    // The sum of the measure, protected by the export parameters.
    let sum = tabulate(
        &mut hk,
        pb::TabulateRequest {
            statistic: pb::TableStatistic::Sum as i32,
            measure: "revenue".into(),
            ..count_of("census", vec![dim("district")])
        },
    )
    .await
    .unwrap();
    assert_eq!(sum.cell(&["Total"]).value, Some(230.0));
    let d = sum.header.decision.clone().unwrap();
    assert!(d.export && d.action == "PASS" && !d.rules.contains(&"X3".to_string()), "{d:?}");
    // The record names the survey field it summed, as the catalog classifies it.
    t.verify_receipt(&sum.header.decision_receipt, &["\"role\":\"measure\"", "\"stat_micro\":true", "\"SUM\""]).await;
}

#[tokio::test]
async fn a_preview_sends_no_value_and_leaves_the_ledger_as_it_was() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = with_small(&t).await;
    let p = consumer.exchange.preview_tabulate(count_of("firms", vec![dim("district")])).await.unwrap().into_inner();
    assert_eq!((p.cells, p.published, p.primary, p.secondary), (4, 2, 1, 1));
    assert_eq!(p.decision.unwrap().action, "PASS");
    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger").await, 0);
    tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.unwrap();
    // Two published cells, each as a COUNT.
    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger").await, 2);
}

#[tokio::test]
async fn bad_tables_are_invalid_arguments_naming_the_field_and_record_nothing() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = with_small(&t).await;
    let group = |name: &str, children: &[&str]| pb::TableGroup {
        name: name.into(),
        children: children.iter().map(|c| c.to_string()).collect(),
    };
    let cases: Vec<(pb::TabulateRequest, &str)> = vec![
        (count_of("firms", vec![dim("no_such")]), "dimensions[0].field"),
        (
            pb::TabulateRequest {
                statistic: pb::TableStatistic::Sum as i32,
                measure: "district".into(),
                ..count_of("firms", vec![dim("age")])
            },
            "measure",
        ),
        (
            count_of(
                "firms",
                vec![pb::TableDimension {
                    groups: vec![group("AB", &["A", "B"]), group("BC", &["B", "C"])],
                    ..dim("district")
                }],
            ),
            "dimensions[0].groups",
        ),
        (
            count_of("firms", vec![pb::TableDimension { groups: vec![group("AB", &["A", "B"])], ..dim("district") }]),
            "dimensions[0].groups",
        ),
        (count_of("firms", vec![dim("district"), dim("age"), dim("district"), dim("age"), dim("age")]), "dimensions"),
        (count_of("firms", vec![dim("reported")]), "dimensions[0].period"),
        (pb::TabulateRequest { statistic: 0, ..count_of("firms", vec![dim("age")]) }, "statistic"),
    ];
    for (req, field) in cases {
        let err = consumer.exchange.tabulate(req.clone()).await.err().unwrap_or_else(|| panic!("{req:?} accepted"));
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }

    // A table over the cell limit (20 000 by default): 151 × 151 codes.
    owner.catalog.register_dataset(firms("wide", true)).await.unwrap();
    let names: Vec<String> = (0..150).map(|i| format!("w{i:03}")).collect();
    let r: Vec<_> = names.iter().map(|n| (n.as_str(), n.as_str(), n.as_str(), "2024-01-01", 1)).collect();
    publish(&mut owner, "wide", "v1", vec![rows(&r)]).await.unwrap();
    tables_grant(&mut owner, &mut consumer, "wide", &["district", "age"], &[]).await;
    let err = consumer.exchange.tabulate(count_of("wide", vec![dim("district"), dim("age")])).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max_cells"), "{}", err.message());

    // A grant asking for a measure that is not numeric.
    let err = consumer
        .sharing
        .request_grant(pb::RequestGrantRequest {
            dataset_id: "firms".into(),
            r#use: pb::GrantUse::Tables as i32,
            dimensions: vec!["district".into()],
            measures: vec!["age".into()],
            purpose: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("measures[0]"), "{}", err.message());
    // An unset use is refused, never read as ROWS.
    let err = consumer
        .sharing
        .request_grant(pb::RequestGrantRequest {
            dataset_id: "firms".into(),
            fields: vec!["district".into()],
            purpose: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("use"), "{}", err.message());

    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind LIKE 'table.%'").await, 0);
}

#[tokio::test]
async fn officers_read_the_suppression_report_and_widen_a_ledger_to_a_group() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("ages", true)).await.unwrap();
    publish(&mut owner, "ages", "v1", vec![ages_rows()]).await.unwrap();
    let mut first = t.consumer("tj-commerce", Level::G2).await;
    let mut partner = t.consumer("tj-tax", Level::G2).await;
    for c in [&mut first, &mut partner] {
        tables_grant(&mut owner, c, "ages", &["district", "age"], &[]).await;
    }
    let mut officer = t
        .register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer], Level::G1)
        .await;

    // The two share data: an officer puts both in one ledger.
    for p in ["tj-commerce", "tj-tax"] {
        let r = officer
            .oversight
            .set_ledger_scope(pb::SetLedgerScopeRequest {
                participant: p.into(),
                scope: "group:tj-finance".into(),
                reason: "the two bureaus exchange their tables".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if !r.receipt.is_empty() {
            t.verify_receipt(&r.receipt, &["ledger.scope_set", p]).await;
        }
    }
    // One of them gets counts by district (all published: A has 5 firms)...
    let by_district = tabulate(&mut first, count_of("ages", vec![dim("district")])).await.unwrap();
    assert_eq!(by_district.cell(&["A"]).value, Some(5.0));
    // ...so the other's young firms by district cannot show A's 4 young ones (5 − 4 = A's one
    // old firm), as they could to a recipient outside the group (the differencing test above).
    let young =
        count_of("ages", vec![dim("district"), pb::TableDimension { filter: vec!["young".into()], ..dim("age") }]);
    let by_age = tabulate(&mut partner, young).await.unwrap();
    assert_eq!(by_age.cell(&["A", "young"]).status, pb::CellStatus::Secondary as i32);
    t.verify_receipt(&by_age.header.decision_receipt, &["\"scope\":\"group:tj-finance\"", "\"checked\":4"]).await;

    // The report: which rule made each primary cell; not for the recipient's own officer role.
    let report = officer
        .oversight
        .get_suppression_report(pb::GetSuppressionReportRequest { table_id: by_age.header.table_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.dataset_id.as_str(), report.recipient.as_str()), ("ages", "tj-tax"));
    let json: serde_json::Value = serde_json::from_str(&report.report).unwrap();
    let primary = json["primary"].as_array().unwrap();
    assert!(
        primary
            .iter()
            .any(|p| p["cell"]["district"] == "A" && p["cell"]["age"] == "old" && p["rules"][0] == "FREQUENCY"),
        "{json}"
    );
    let err = partner
        .oversight
        .get_suppression_report(pb::GetSuppressionReportRequest { table_id: by_age.header.table_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An officer who received a table does not read its report.
    let mut both = t
        .register(
            "tj-office",
            ParticipantKind::StateOrgan,
            RecipientType::GovDept,
            "CN-TJ",
            &[Role::Officer, Role::Consumer],
            Level::G2,
        )
        .await;
    tables_grant(&mut owner, &mut both, "ages", &["district"], &[]).await;
    let own = tabulate(&mut both, count_of("ages", vec![dim("district")])).await.unwrap();
    let err = both
        .oversight
        .get_suppression_report(pb::GetSuppressionReportRequest { table_id: own.header.table_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("another officer"), "{}", err.message());
}

fn table_rules(n: u32, zeros: bool, p: Option<u32>, dominance: Option<(u32, u32)>) -> pb::TableRules {
    pb::TableRules {
        min_frequency: n,
        zeros_unsafe: zeros,
        p_percent: p,
        dominance: dominance.map(|(n, k)| pb::TableRulesDominance { n, k }),
    }
}

#[tokio::test]
async fn a_dataset_owner_may_only_make_the_parameters_stricter() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = with_small(&t).await;
    let export = Some(table_rules(10, true, Some(10), Some((2, 90))));
    let set = |domestic: pb::TableRules, export: Option<pb::TableRules>| pb::SetTableRulesRequest {
        dataset_id: "firms".into(),
        domestic: Some(domestic),
        export,
    };

    // Weaker than the gateway's: refused, naming the parameter and not the gateway's value.
    let err = owner.catalog.set_table_rules(set(table_rules(2, false, Some(10), None), export)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("domestic.min_frequency") && !err.message().contains('3'), "{}", err.message());
    let err = owner.catalog.set_table_rules(set(table_rules(3, false, None, None), export)).await.unwrap_err();
    assert!(err.message().contains("domestic.p_percent"), "{}", err.message());
    let err = owner.catalog.set_table_rules(set(table_rules(6, false, Some(10), None), None)).await.unwrap_err();
    assert!(err.message().contains("export"), "{}", err.message());
    // Only the owner.
    let err = consumer.catalog.set_table_rules(set(table_rules(6, false, Some(10), None), export)).await;
    assert_eq!(err.unwrap_err().code(), Code::PermissionDenied);

    // Released before the owner tightens the rules: A (5 firms).
    let before = tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.unwrap();
    assert_eq!(before.cell(&["A"]).value, Some(5.0));
    let ledger = t.count("SELECT COUNT(*) FROM release_ledger").await;

    // At least 6 firms a cell: A (5) is now primary as well.
    let r =
        owner.catalog.set_table_rules(set(table_rules(6, false, Some(10), None), export)).await.unwrap().into_inner();
    if !r.receipt.is_empty() {
        t.verify_receipt(&r.receipt, &["table_rules.set", "domestic_hmac"]).await;
    }
    let mut fresh = t.consumer("tj-tax", Level::G2).await;
    tables_grant(&mut owner, &mut fresh, "firms", &["district"], &[]).await;
    let table = tabulate(&mut fresh, count_of("firms", vec![dim("district")])).await.unwrap();
    assert_eq!(table.cell(&["A"]).status, pb::CellStatus::Primary as i32);
    assert_eq!(table.cell(&["Total"]).value, Some(10.0));

    // The first consumer has A already: no pattern can protect it now. Refused, naming the
    // released cell, recorded, nothing added to the ledger.
    let err = tabulate(&mut consumer, count_of("firms", vec![dim("district")])).await.err().unwrap();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(r#"{"district":["A"]}"#), "{}", err.message());
    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger WHERE scope = 'tj-commerce'").await, ledger);
    assert_eq!(
        t.count("SELECT COUNT(*) FROM records WHERE kind = 'table.decision' AND json LIKE '%REFUSED%'").await,
        1
    );
}

#[tokio::test]
async fn a_holding_is_one_respondent() {
    use pb::{FieldType as T, Level as L, Pi};
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    let dataset = pb::RegisterDatasetRequest {
        id: "groups".into(),
        title: "Enterprises and their groups".into(),
        fields: vec![
            field("enterprise", T::String, L::G2, Pi::None, None),
            field("district", T::String, L::G2, Pi::None, None),
            field("grp", T::String, L::G2, Pi::None, None),
        ],
        contributor_key_field: "enterprise".into(),
        holding_key_field: "grp".into(),
        ..Default::default()
    };
    // A holding groups contributors: without a contributor key it is refused.
    let err = owner
        .catalog
        .register_dataset(pb::RegisterDatasetRequest { contributor_key_field: String::new(), ..dataset.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("holding_key_field"), "{}", err.message());
    owner.catalog.register_dataset(dataset).await.unwrap();
    // A: three firms of one group; B: five independent firms; C: four, two of them in group h2.
    let r: Vec<(String, &str, Option<&str>)> = (0..12)
        .map(|i| {
            let (district, grp) = match i {
                0..=2 => ("A", Some("h1")),
                3..=7 => ("B", None),
                8 | 9 => ("C", Some("h2")),
                _ => ("C", None),
            };
            (format!("g{i}"), district, grp)
        })
        .collect();
    let batch = RowBatch::from_columns(
        12,
        vec![
            pb::Column { strings: r.iter().map(|x| x.0.clone()).collect(), ..Default::default() },
            pb::Column { strings: r.iter().map(|x| x.1.to_owned()).collect(), ..Default::default() },
            pb::Column {
                strings: r.iter().filter_map(|x| x.2.map(str::to_owned)).collect(),
                nulls: (0..12u32).filter(|&i| r[i as usize].2.is_none()).collect(),
                ..Default::default()
            },
        ],
    );
    publish(&mut owner, "groups", "v1", vec![batch]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    tables_grant(&mut owner, &mut consumer, "groups", &["district"], &[]).await;
    let table = tabulate(&mut consumer, count_of("groups", vec![dim("district")])).await.unwrap();
    // A has three contributors (n = 3 passes) but one respondent: primary.
    assert_eq!(table.cell(&["A"]).status, pb::CellStatus::Primary as i32);
    assert_eq!((table.cell(&["B"]).value, table.cell(&["B"]).contributors), (Some(5.0), Some(5)));
    // Counts stay per contributor.
    assert_eq!(table.cell(&["Total"]).value, Some(12.0));

    // A contributor in two holdings breaks the engine's precondition: refused, not guessed.
    let strings =
        |v: &[&str]| pb::Column { strings: v.iter().map(|s| (*s).to_owned()).collect(), ..Default::default() };
    let batch = RowBatch::from_columns(
        3,
        vec![strings(&["g0", "g1", "g0"]), strings(&["A", "A", "C"]), strings(&["h1", "h1", "h2"])],
    );
    publish(&mut owner, "groups", "v2", vec![batch]).await.unwrap();
    let Err(err) = tabulate(&mut consumer, count_of("groups", vec![dim("district")])).await else {
        panic!("a contributor in two holdings was tabulated");
    };
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("two holdings"), "{}", err.message());
}

#[tokio::test]
async fn a_table_of_government_data_abroad_is_held_by_x6_and_its_preview_queues_nothing() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("gov", true)).await.unwrap();
    publish(&mut owner, "gov", "v1", vec![small_rows()]).await.unwrap();
    let mut hk = t
        .register("hk-univ", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer], Level::G4)
        .await;
    tables_grant(&mut owner, &mut hk, "gov", &["district"], &[]).await;

    let preview = hk.exchange.preview_tabulate(count_of("gov", vec![dim("district")])).await.unwrap().into_inner();
    let d = preview.decision.unwrap();
    assert_eq!((d.action.as_str(), d.export), ("HOLD", true));
    assert!(d.rules.contains(&"X6".to_string()) && !d.rules.contains(&"X3".to_string()), "{:?}", d.rules);
    assert!(!preview.refused.is_empty());
    assert_eq!((preview.published, preview.primary, preview.secondary), (0, 0, 0));
    assert_eq!(t.count("SELECT COUNT(*) FROM holds").await, 0, "a preview queues nothing");

    let err = tabulate(&mut hk, count_of("gov", vec![dim("district")])).await.err().unwrap();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(t.count("SELECT COUNT(*) FROM holds").await, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM release_ledger").await, 0);
}
