//! An HTTPS client of a tlog-witness: hyper's HTTP/1.1 over tokio-rustls, one kept-alive
//! connection per client (re-opened when the witness closed it). Used by the gateway's feeder
//! and the tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;

/// Largest answer read (a few signature lines, or a size).
const MAX_ANSWER: usize = 64 * 1024;

/// An answer of the witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (UTF-8; invalid bytes replaced).
    pub body: String,
}

/// A client of one witness's submission prefix.
pub struct WitnessClient {
    authority: String,
    prefix: String,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    timeout: Duration,
    connection: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for WitnessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessClient").field("authority", &self.authority).field("prefix", &self.prefix).finish()
    }
}

impl WitnessClient {
    /// A client of the witness at `url` (`https://host:port[/prefix]`; `http` is refused),
    /// trusting the CA certificates of `ca_pem` for its server certificate.
    ///
    /// # Errors
    /// A URL that is not `https` with a host, or a CA file with no certificate.
    pub fn new(url: &str, ca_pem: &str, timeout: Duration) -> anyhow::Result<WitnessClient> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let uri: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("{url:?}: a witness is reached over https only");
        }
        let host = uri.host().with_context(|| format!("{url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(bare.to_owned()).with_context(|| format!("{url:?}: {host} is not a server name"))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.context("the witness CA does not parse")?).context("the witness CA")?;
        }
        anyhow::ensure!(!roots.is_empty(), "the witness CA file holds no certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(WitnessClient {
            authority: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS with {}", self.authority))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "witness connection closed");
            }
        });
        Ok(sender)
    }

    /// `POST <prefix>/add-checkpoint` with `body`.
    ///
    /// # Errors
    /// The witness cannot be reached or its answer not read within the timeout.
    pub async fn add_checkpoint(&self, body: &str) -> anyhow::Result<Answer> {
        self.request(Method::POST, super::ADD_CHECKPOINT, body).await
    }

    /// Any request (`path` below the prefix), for the tests of the witness's answers.
    ///
    /// # Errors
    /// As [`WitnessClient::add_checkpoint`].
    pub async fn request(&self, method: Method, path: &str, body: &str) -> anyhow::Result<Answer> {
        tokio::time::timeout(self.timeout, self.send(method, path, body))
            .await
            .with_context(|| format!("the witness at {} did not answer in {:?}", self.authority, self.timeout))?
    }

    async fn send(&self, method: Method, path: &str, body: &str) -> anyhow::Result<Answer> {
        let mut slot = self.connection.lock().await;
        let kept = match slot.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match kept {
            Some(s) => s,
            None => self.connect().await?,
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body.to_owned())))
            .context("building the request")?;
        let response = sender.send_request(request).await.context("sending to the witness")?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the witness's answer: {e}"))?
            .to_bytes();
        *slot = Some(sender);
        Ok(Answer { status, content_type, body: String::from_utf8_lossy(&bytes).into_owned() })
    }
}
