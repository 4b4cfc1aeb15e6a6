//! `TestGateway::start()` gives each test a real gateway and clients per participant.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::ParticipantId;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::log::sequencer::{LogSettings, TransferLog};
use bth_gateway::pb::{
    self, admin_client::AdminClient, catalog_client::CatalogClient, exchange_client::ExchangeClient,
    monitoring_client::MonitoringClient, oversight_client::OversightClient, publishing_client::PublishingClient,
    reports_client::ReportsClient, review_client::ReviewClient, sharing_client::SharingClient,
};
use bth_gateway::pki::{self, LeafKind, Pem};
use bth_gateway::policy::PolicyConfig;
use bth_gateway::server::{self, TlsPem};
use bth_gateway::service::{participants, Clock, Gateway, Limits};
use bth_gateway::store::postgres::PostgresStore;
use bth_gateway::store::sqlite::SqliteStore;
use bth_gateway::store::Store;
use bth_gateway::translog::note::Signer;
use bth_gateway::wire::{DecodedBatch, RowBatch};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The log origin (and key name) of test gateways.
pub const LOG_ORIGIN: &str = "test.example/log";

/// The message size limit of test gateways.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// A clock tests move forward.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    /// Now plus `by`, as a protobuf timestamp.
    pub fn now_plus(&self, by: Duration) -> prost_types::Timestamp {
        let t = self.now() + by;
        prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The variable that runs the integration tests on PostgreSQL: `BTH_IT_BACKEND=postgres` (with
/// `BTH_TEST_DATABASE_URL` naming a server where databases may be created). SQLite otherwise.
pub const BACKEND_VAR: &str = "BTH_IT_BACKEND";

/// Whether this run uses PostgreSQL.
pub fn on_postgres() -> bool {
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_VAR}={other}: expected postgres or sqlite"),
    }
}

/// A database on the `BTH_TEST_DATABASE_URL` server for one gateway, dropped (with the
/// gateway's connections) when this is dropped, also when the test panics.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("BTH_TEST_DATABASE_URL")
            .unwrap_or_else(|_| panic!("{BACKEND_VAR}=postgres needs BTH_TEST_DATABASE_URL (.ci/postgres.sh start)"));
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).unwrap();
        let name = format!("bth_it_{}", hex::encode(suffix));
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        PgDatabase { url: url.to_string(), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // From any context, also inside the test's runtime: a thread with its own.
        let dropped = std::thread::spawn(move || {
            use sqlx::{Connection, Executor};
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let admin = std::env::var("BTH_TEST_DATABASE_URL").unwrap_or_default();
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// A running gateway; stopped when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub ca: Pem,
    pub clock: Arc<TestClock>,
    pub gw: Gateway,
    /// The gateway's database: `sqlite:…` or `postgres://…`.
    pub db_url: String,
    /// The PostgreSQL database, dropped afterwards.
    pg_database: Option<PgDatabase>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Typed clients of one participant.
#[derive(Clone)]
pub struct Client {
    pub admin: AdminClient<Channel>,
    pub catalog: CatalogClient<Channel>,
    pub publishing: PublishingClient<Channel>,
    pub sharing: SharingClient<Channel>,
    pub exchange: ExchangeClient<Channel>,
    pub oversight: OversightClient<Channel>,
    pub review: ReviewClient<Channel>,
    pub monitoring: MonitoringClient<Channel>,
    pub reports: ReportsClient<Channel>,
}

impl Client {
    /// Typed clients sharing one connection.
    pub fn from_channel(channel: Channel) -> Client {
        Client {
            admin: AdminClient::new(channel.clone()),
            catalog: CatalogClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            publishing: PublishingClient::new(channel.clone()),
            sharing: SharingClient::new(channel.clone()),
            oversight: OversightClient::new(channel.clone()),
            review: ReviewClient::new(channel.clone()),
            monitoring: MonitoringClient::new(channel.clone()),
            reports: ReportsClient::new(channel.clone()),
            exchange: ExchangeClient::new(channel).max_decoding_message_size(64 << 20),
        }
    }
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(Limits { chunk_rows: 4, ..Limits::default() }).await
    }

    /// A gateway with the given limits (tests of large transfers use realistic chunks).
    pub async fn start_with(limits: Limits) -> TestGateway {
        Self::start_configured(limits, server::Settings { max_message_bytes: MAX_MESSAGE, ..Default::default() }).await
    }

    /// A gateway with the given use-case limits and listener settings (the hostile tests).
    pub async fn start_configured(limits: Limits, settings: server::Settings) -> TestGateway {
        Self::start_in(limits, settings, None).await
    }

    /// As [`TestGateway::start_configured`], with the SQLite database in `data_dir` when given
    /// (the disk-full test puts it on a small file system).
    pub async fn start_in(
        limits: Limits,
        settings: server::Settings,
        data_dir: Option<&std::path::Path>,
    ) -> TestGateway {
        Self::launch(limits, settings, data_dir, PolicyConfig::default(), None).await
    }

    /// A gateway feeding the witnesses of `witness` (docs/witness.md).
    pub async fn start_witnessed(witness: bth_gateway::log::witnesses::WitnessSettings) -> TestGateway {
        let settings = server::Settings { max_message_bytes: MAX_MESSAGE, ..Default::default() };
        Self::launch(
            Limits { chunk_rows: 4, ..Limits::default() },
            settings,
            None,
            PolicyConfig::default(),
            Some(witness),
        )
        .await
    }

    /// A gateway with the rules' settings `policy` (e.g. maker-checker approvals).
    pub async fn start_with_policy(policy: PolicyConfig) -> TestGateway {
        let settings = server::Settings { max_message_bytes: MAX_MESSAGE, ..Default::default() };
        Self::launch(Limits { chunk_rows: 4, ..Limits::default() }, settings, None, policy, None).await
    }

    async fn launch(
        limits: Limits,
        settings: server::Settings,
        data_dir: Option<&std::path::Path>,
        policy: PolicyConfig,
        witness: Option<bth_gateway::log::witnesses::WitnessSettings>,
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::new_ca().unwrap();
        let server_pem = pki::issue(&ca, "bth-gateway server", LeafKind::Server).unwrap();
        let (db_url, pg_database, store): (_, _, Arc<dyn Store>) = if on_postgres() {
            let db = PgDatabase::create().await;
            // A small pool: many test gateways share one server.
            let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
            let store = PostgresStore::connect(options, 4).await.unwrap();
            (db.url.clone(), Some(db), Arc::new(store))
        } else {
            let url = format!("sqlite:{}", data_dir.unwrap_or(dir.path()).join("gateway.db").display());
            let store = SqliteStore::open(&url).await.unwrap();
            (url, None, Arc::new(store))
        };
        let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
        let signer = Signer::from_seed(LOG_ORIGIN, &[1u8; 32]).unwrap();
        let log = TransferLog::start(store.clone(), signer, LogSettings::new(LOG_ORIGIN)).await.unwrap();
        let witnesses = match &witness {
            Some(w) => bth_gateway::log::witnesses::Witnesses::start(w, store.clone(), &log).await.unwrap(),
            None => None,
        };
        let gw = Gateway::new(store, &[7u8; 32], clock.clone(), limits, policy, log).with_witnesses(witnesses);
        gw.log_policy().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = TlsPem { cert: server_pem.cert, key: server_pem.key, client_ca: ca.cert.clone() };
        let (stop, stopped) = oneshot::channel::<()>();
        let served = gw.clone();
        let server = tokio::spawn(async move {
            server::run(listener, served, &tls, &settings, async {
                let _ = stopped.await;
            })
            .await
        });
        let t =
            TestGateway { addr, ca, clock, gw, db_url, pg_database, _dir: dir, stop: Some(stop), server: Some(server) };
        t.register("admin", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Admin], Level::G1)
            .await;
        t
    }

    /// Registers a participant directly (bootstrap) and returns its clients.
    pub async fn register(
        &self,
        id: &str,
        kind: ParticipantKind,
        recipient_type: RecipientType,
        region: &str,
        roles: &[Role],
        clearance: Level,
    ) -> Client {
        let p = Participant {
            id: ParticipantId::parse(id).unwrap(),
            display_name: format!("{id} (test)"),
            kind,
            recipient_type,
            region: Region::parse(region).unwrap(),
            in_tianjin_ftz: false,
            roles: roles.iter().copied().collect(),
            clearance,
            status: ParticipantStatus::Active,
        };
        participants::register_as(&self.gw, "test", p).await.unwrap();
        self.client(id).await
    }

    /// A Tianjin department that publishes.
    pub async fn publisher(&self, id: &str) -> Client {
        self.register(id, ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Publisher], Level::G4)
            .await
    }

    /// A Tianjin department that consumes, cleared to `clearance`.
    pub async fn consumer(&self, id: &str, clearance: Level) -> Client {
        self.register(id, ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Consumer], clearance)
            .await
    }

    /// Clients with a fresh certificate for `id` from the gateway's CA.
    pub async fn client(&self, id: &str) -> Client {
        let leaf = pki::issue(&self.ca, id, LeafKind::Client).unwrap();
        self.client_with(Some(&leaf), &self.ca.cert).await.unwrap()
    }

    /// Clients with an arbitrary certificate (or none), trusting `server_ca`.
    pub async fn client_with(&self, leaf: Option<&Pem>, server_ca: &str) -> Result<Client, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(server_ca)).domain_name("localhost");
        if let Some(leaf) = leaf {
            tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
        }
        let channel =
            Channel::from_shared(format!("https://{}", self.addr)).unwrap().tls_config(tls)?.connect().await?;
        Ok(Client::from_channel(channel))
    }

    /// The endpoint of participant `id` (a fresh certificate from the gateway's CA), to adjust
    /// before connecting.
    pub fn endpoint(&self, id: &str) -> tonic::transport::Endpoint {
        let leaf = pki::issue(&self.ca, id, LeafKind::Client).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert))
            .domain_name("localhost")
            .identity(Identity::from_pem(&leaf.cert, &leaf.key));
        Channel::from_shared(format!("https://{}", self.addr)).unwrap().tls_config(tls).unwrap()
    }

    /// A new connection of participant `id`.
    pub async fn channel(&self, id: &str) -> Channel {
        self.endpoint(id).connect().await.unwrap()
    }

    /// Runs a SQL count against the gateway's database (to check what is stored).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.pg_database.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    /// The text values of a one-column query on the gateway's database.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        use sqlx::Connection;
        if self.pg_database.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
    }

    /// Runs SQL statements on the gateway's database (as an attacker or a failing disk would):
    /// `sqlite` on SQLite, `postgres` on PostgreSQL.
    pub async fn execute(&self, sqlite: &str, postgres: &str) {
        use sqlx::Connection;
        if self.pg_database.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::raw_sql(postgres).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::raw_sql(sqlite).execute(&mut conn).await.unwrap();
        }
    }

    /// Checks a `c2sp.org/tlog-proof@v1` receipt an RPC answered with: its checkpoint is signed
    /// by this gateway's log key, its leaf holds every one of `needles`, and the inclusion proof
    /// leads from that leaf to the checkpoint's root.
    pub async fn verify_receipt(&self, receipt: &str, needles: &[&str]) {
        use bth_gateway::translog::{merkle, note};
        let (index, proof, signed) = note::parse_receipt(receipt).expect("a tlog-proof receipt");
        let checkpoint = note::Verifier::new(self.gw.log.verifier_key()).unwrap().verify_note(&signed).unwrap();
        let leaf = self.gw.store.leaves(index, 1).await.unwrap().pop().expect("the receipt's leaf");
        for needle in needles {
            assert!(leaf.json.contains(needle), "{needle} not in leaf {index}: {}", leaf.json);
        }
        let hash = merkle::leaf_hash(leaf.json.as_bytes());
        merkle::verify_inclusion(&hash, index, checkpoint.size, &proof, &checkpoint.root).unwrap();
    }

    /// Checks a receipt and the record sent beside it as a recipient would, offline, with
    /// nothing but the gateway's verifier key: the record is canonical JSON holding every one
    /// of `needles`, and the receipt's inclusion proof leads from its leaf hash to the root of a
    /// checkpoint the gateway signed.
    pub fn verify_standalone(&self, record: &str, receipt: &str, needles: &[&str]) {
        use bth_gateway::translog::{canonical, merkle, note};
        assert!(!record.is_empty() && !receipt.is_empty(), "a record and its receipt");
        let value: serde_json::Value = serde_json::from_str(record).expect("the record is JSON");
        assert_eq!(canonical::to_canonical_json(&value).unwrap(), record, "the record is canonical");
        for needle in needles {
            assert!(record.contains(needle), "{needle} not in the record: {record}");
        }
        let (index, proof, signed) = note::parse_receipt(receipt).expect("a tlog-proof receipt");
        let checkpoint = note::Verifier::new(self.gw.log.verifier_key()).unwrap().verify_note(&signed).unwrap();
        merkle::verify_inclusion(
            &merkle::leaf_hash(record.as_bytes()),
            index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .expect("the receipt proves this record");
    }

    /// The gateway's SQLite URL, or `None` (after saying so) on a PostgreSQL run: for tests of
    /// the SQLite file itself (`audit verify --db`).
    pub fn sqlite_url(&self, test: &str) -> Option<&str> {
        if self.pg_database.is_some() {
            eprintln!("skipped {test} on PostgreSQL: it is about the SQLite file");
            None
        } else {
            Some(&self.db_url)
        }
    }

    /// Stops the server, draining in-flight calls; returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // (`pg_database` drops the database after this.)
    }
}

// ---- building requests ----

/// A field definition.
pub fn field(name: &str, ty: pb::FieldType, level: pb::Level, pi: pb::Pi, mask: Option<pb::Mask>) -> pb::Field {
    pb::Field {
        name: name.into(),
        r#type: ty as i32,
        level: level as i32,
        pi: pi as i32,
        share: pb::Share::Conditional as i32,
        default_mask: mask,
        nullable: true,
        ..Default::default()
    }
}

pub fn mask(kind: pb::MaskKind) -> pb::Mask {
    pb::Mask { kind: kind as i32, ..Default::default() }
}

/// The survey dataset most tests use: one field per type and mask.
pub fn survey(id: &str) -> pb::RegisterDatasetRequest {
    use pb::{FieldType as T, Level as L, Pi};
    pb::RegisterDatasetRequest {
        id: id.into(),
        title: "Enterprise survey".into(),
        description: "Service-outsourcing enterprises, Tianjin".into(),
        government_data: true,
        fields: vec![
            field("enterprise", T::String, L::G2, Pi::None, None),
            field("district", T::String, L::G1, Pi::None, None),
            field("contact", T::String, L::G3, Pi::Pi, Some(pb::Mask { keep_first: 1, ..mask(pb::MaskKind::Partial) })),
            field("phone", T::String, L::G3, Pi::Pi, Some(mask(pb::MaskKind::Hash))),
            field(
                "founded",
                T::Date,
                L::G2,
                Pi::None,
                Some(pb::Mask { granularity: pb::DateGranularity::Year as i32, ..mask(pb::MaskKind::GeneralizeDate) }),
            ),
            field(
                "employees",
                T::Int64,
                L::G2,
                Pi::None,
                Some(pb::Mask { bucket_width: 100, ..mask(pb::MaskKind::Bucket) }),
            ),
            field("revenue", T::Decimal, L::G2, Pi::None, None),
            field("score", T::Float64, L::G2, Pi::None, None),
            field("exporter", T::Bool, L::G2, Pi::None, None),
            field("audited_at", T::Timestamp, L::G2, Pi::None, Some(mask(pb::MaskKind::Redact))),
            field("tax_id", T::String, L::G2, Pi::None, Some(mask(pb::MaskKind::Drop))),
        ],
        person_key_field: "contact".into(),
        contributor_key_field: "enterprise".into(),
        holding_key_field: String::new(),
    }
}

pub fn strings(v: &[&str]) -> pb::Column {
    pb::Column { strings: v.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

/// `n` rows of the survey dataset; row `i` is deterministic.
pub fn survey_rows(n: u32, offset: u32) -> RowBatch {
    let r: Vec<u32> = (offset..offset + n).collect();
    let s = |f: &dyn Fn(u32) -> String| pb::Column { strings: r.iter().map(|&i| f(i)).collect(), ..Default::default() };
    RowBatch::from_columns(
        n,
        vec![
            s(&|i| format!("企业{i}")),
            s(&|i| ["滨海新区", "和平区", "南开区"][i as usize % 3].to_owned()),
            s(&|i| format!("张{i}丰")),
            s(&|i| format!("1381234{:04}", i)),
            s(&|i| format!("20{:02}-0{}-15", 10 + i % 10, 1 + i % 9)),
            pb::Column { ints: r.iter().map(|&i| i64::from(i) * 37).collect(), ..Default::default() },
            s(&|i| format!("{i}.50")),
            pb::Column { doubles: r.iter().map(|&i| f64::from(i) / 4.0).collect(), ..Default::default() },
            pb::Column { bools: r.iter().map(|&i| i % 2 == 0).collect(), ..Default::default() },
            s(&|i| format!("2025-06-0{}T10:00:00+08:00", 1 + i % 9)),
            s(&|i| format!("91120000MA0{i:05}")),
        ],
    )
}

pub fn header(dataset: &str, key: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        msg: Some(pb::publish_request::Msg::Header(pb::PublishHeader {
            dataset_id: dataset.into(),
            idempotency_key: key.into(),
        })),
    }
}

pub fn batch(b: RowBatch) -> pb::PublishRequest {
    pb::PublishRequest { msg: Some(pb::publish_request::Msg::Batch(b)) }
}

/// Publishes `batches` in one stream.
pub async fn publish(
    c: &mut Client,
    dataset: &str,
    key: &str,
    batches: Vec<RowBatch>,
) -> Result<pb::PublishResponse, tonic::Status> {
    let msgs: Vec<_> = std::iter::once(header(dataset, key)).chain(batches.into_iter().map(batch)).collect();
    c.publishing.publish(tokio_stream::iter(msgs)).await.map(|r| r.into_inner())
}

/// Requests a grant on `fields` and has `owner` approve it with `approve`.
pub async fn granted(
    owner: &mut Client,
    consumer: &mut Client,
    dataset: &str,
    fields: &[&str],
    approve: pb::Approve,
) -> pb::Grant {
    let g = consumer
        .sharing
        .request_grant(pb::RequestGrantRequest {
            r#use: pb::GrantUse::Rows as i32,
            dataset_id: dataset.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            purpose: "industry statistics".into(),
            legal_basis: "统计法 Art. 7".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    owner
        .sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            decision: Some(pb::decide_grant_request::Decision::Approve(approve)),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Everything one pull returned.
#[derive(Debug)]
pub struct Pulled {
    pub header: pb::PullHeader,
    pub batches: Vec<DecodedBatch>,
    pub raw: Vec<RowBatch>,
    pub trailer: pb::PullTrailer,
}

impl Pulled {
    /// The delivered column of field `name`, all batches concatenated.
    pub fn column(&self, name: &str) -> pb::Column {
        let i =
            self.header.fields.iter().position(|f| f.name == name).unwrap_or_else(|| panic!("{name} not delivered"));
        let mut out = pb::Column::default();
        let mut rows = 0;
        for b in &self.batches {
            bth_gateway::domain::values::ops::append(&mut out, rows, b.columns[i].clone());
            rows += b.row_count;
        }
        out
    }

    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| u64::from(b.row_count)).sum()
    }
}

pub async fn pull(c: &mut Client, req: pb::PullRequest) -> Result<Pulled, tonic::Status> {
    use pb::pull_response::Msg;
    let mut stream = c.exchange.pull(req).await?.into_inner();
    let mut header = None;
    let mut raw = Vec::new();
    let mut trailer = None;
    while let Some(msg) = stream.message().await? {
        match msg.msg.unwrap() {
            Msg::Header(h) => header = Some(h),
            Msg::Batch(b) => raw.push(b),
            Msg::Trailer(t) => trailer = Some(t),
        }
    }
    let batches = raw.iter().map(|b| b.decode().unwrap()).collect();
    Ok(Pulled { header: header.unwrap(), batches, raw, trailer: trailer.expect("a trailer") })
}

pub fn pull_req(dataset: &str) -> pb::PullRequest {
    pb::PullRequest { dataset_id: dataset.into(), ..Default::default() }
}

/// A connection of participant `id` to a `bth-gateway serve` process on `port` whose working
/// directory `dir` was written by `init` (and `certs issue ID`); waits up to 20 s for it to come up.
pub async fn serve_channel(dir: &std::path::Path, port: u16, id: &str) -> Channel {
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("certs/ca.pem")))
        .identity(Identity::from_pem(
            read(&format!("certs/clients/{id}.pem")),
            read(&format!("certs/clients/{id}.key")),
        ))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match endpoint.connect().await {
            Ok(c) => return c,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the gateway on port {port} did not come up: {e}"),
        }
    }
}
