//! Connections: the accept loop, the TLS handshake under a deadline, and the caps on what one
//! client can hold before and after it is authenticated.
//!
//! - **Before the handshake completes** a socket proves nothing, so unauthenticated sockets are
//!   few and short-lived: each has `handshake_timeout` to finish, and at most
//!   `max_pending_handshakes` wait at once; a new one evicts the oldest. A flood of raw sockets
//!   therefore costs the attacker its own sockets, while a real client's handshake (a few
//!   milliseconds) still gets through.
//! - **After the handshake** the connection belongs to a verified certificate: at most
//!   `max_connections` in all and `max_connections_per_participant` per certificate subject;
//!   calls on a connection over its participant's limit are answered `RESOURCE_EXHAUSTED` and the
//!   connection is closed a second later (such connections never hold one of the shared places;
//!   at most 64 are open at once). A connection with no call in flight for `idle_timeout` is
//!   closed (checked whenever the connection is read; a peer that stops reading is dropped by the
//!   HTTP/2 keep-alive instead).
//! - **Accept errors** (out of file descriptors, above all) are backed off, not spun on.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ring::digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::NetworkConfig;
use crate::grpc::peer::{Activity, Peer};

/// How long a connection over its participant's cap stays open (to answer why), whatever it does.
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// How long a connection found idle at its deadline is watched before it is closed.
const IDLE_GRACE: Duration = Duration::from_millis(200);

/// Connections over their participant's cap open at once (beyond, they are closed at once).
const MAX_REFUSED_CONNECTIONS: usize = 64;

/// The longest pause after failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Counts of what the listener did (logged when the listener stops).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Handshakes abandoned because newer sockets needed their place.
    pub evicted: std::sync::atomic::AtomicU64,
    /// Handshakes that did not finish in time.
    pub timed_out: std::sync::atomic::AtomicU64,
    /// Authenticated connections refused because `max_connections` were open.
    pub refused_full: std::sync::atomic::AtomicU64,
    /// Failed `accept` calls.
    pub accept_errors: std::sync::atomic::AtomicU64,
}

/// The sockets still in their handshake, oldest first.
#[derive(Default)]
struct Pending {
    next: u64,
    waiting: BTreeMap<u64, CancellationToken>,
}

/// Open connections per certificate subject.
#[derive(Default)]
struct PerSubject(Mutex<HashMap<Arc<str>, usize>>);

/// One connection's place in its subject's count.
struct SubjectSlot {
    counts: Arc<PerSubject>,
    subject: Arc<str>,
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.subject) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.subject);
            }
        }
    }
}

/// An authenticated connection as tonic serves it: the TLS stream, the connection's [`Peer`],
/// its places in the caps (released when it closes) and its idle timer.
pub struct Conn {
    inner: TlsStream<TcpStream>,
    peer: Peer,
    /// How long without a call in flight before it is closed; for a connection over its
    /// participant's cap ([`Peer::refusal`]), how long it stays open whatever its calls.
    idle_timeout: Duration,
    /// Found idle at the deadline with this many calls started: closed if still so after a grace.
    idle_seen: Option<u64>,
    idle: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
    _slot: Option<SubjectSlot>,
}

impl Conn {
    /// Whether the idle timer says to close: `Ready` once no call has been in flight for the
    /// idle timeout; otherwise re-arms the timer.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.peer.refusal.is_some() {
                return true;
            }
            let now = Instant::now();
            let activity = &self.peer.activity;
            let deadline = match activity.idle_since() {
                Some(since) if now.duration_since(since) >= self.idle_timeout => {
                    // A call whose headers were read but whose task has not run yet is not
                    // counted: close only if nothing started during a short grace.
                    let started = activity.started();
                    if self.idle_seen == Some(started) {
                        return true;
                    }
                    self.idle_seen = Some(started);
                    now + IDLE_GRACE
                }
                Some(since) => {
                    self.idle_seen = None;
                    since + self.idle_timeout
                }
                None => {
                    self.idle_seen = None;
                    now + self.idle_timeout
                }
            };
            self.idle.as_mut().reset(tokio::time::Instant::from_std(deadline));
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.poll_idle(cx) {
            // End of stream: the HTTP/2 connection closes.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// The listener's settings, from `[network]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a socket has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// Sockets in their handshake at once; a new one evicts the oldest.
    pub max_pending_handshakes: usize,
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// Authenticated connections per certificate subject.
    pub max_connections_per_participant: usize,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl From<&NetworkConfig> for Limits {
    fn from(c: &NetworkConfig) -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(c.handshake_timeout_secs.max(1)),
            max_pending_handshakes: c.max_pending_handshakes.max(1),
            max_connections: c.max_connections.max(1),
            max_connections_per_participant: c.max_connections_per_participant.max(1),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs.max(1)),
        }
    }
}

/// Accepts on `listener` until `stop` is cancelled or the receiver of `out` goes away, and
/// sends every authenticated connection to `out`.
pub async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
    stats: Arc<ListenerStats>,
    out: mpsc::Sender<Result<Conn, io::Error>>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let pending = Arc::new(Mutex::new(Pending::default()));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(Semaphore::new(MAX_REFUSED_CONNECTIONS));
    let subjects = Arc::new(PerSubject::default());
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            _ = out.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; pausing");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let cancel = CancellationToken::new();
        let id = {
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            while p.waiting.len() >= limits.max_pending_handshakes {
                if let Some((_, oldest)) = p.waiting.pop_first() {
                    oldest.cancel();
                    stats.evicted.fetch_add(1, Relaxed);
                }
            }
            let id = p.next;
            p.next += 1;
            p.waiting.insert(id, cancel.clone());
            id
        };
        let (acceptor, limits, stats, out) = (acceptor.clone(), limits.clone(), stats.clone(), out.clone());
        let (pending, connections, subjects) = (pending.clone(), connections.clone(), subjects.clone());
        let refused = refused.clone();
        tokio::spawn(async move {
            let handshake = tokio::select! {
                _ = cancel.cancelled() => None,
                h = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => Some(h),
            };
            pending.lock().unwrap_or_else(|p| p.into_inner()).waiting.remove(&id);
            let tls = match handshake {
                None => return,
                Some(Err(_)) => {
                    stats.timed_out.fetch_add(1, Relaxed);
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
                Some(Ok(Err(e))) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Some(Ok(Ok(tls))) => tls,
            };
            let (subject, cert_sha256, client_auth) = subject_of(&tls);
            // The subject's own cap first: a connection over it never takes one of the places
            // everyone shares. It gets a place among the few refused connections (closed at a
            // fixed deadline that its calls do not extend), or none and is closed at once.
            let key: Arc<str> = subject.clone().unwrap_or_else(|| Arc::from(""));
            let slot = {
                let mut counts = subjects.0.lock().unwrap_or_else(|p| p.into_inner());
                let n = counts.entry(key.clone()).or_insert(0);
                if *n >= limits.max_connections_per_participant {
                    Err(*n)
                } else {
                    *n += 1;
                    Ok(SubjectSlot { counts: subjects.clone(), subject: key.clone() })
                }
            };
            let (permit, refusal, slot) = match slot {
                Ok(slot) => {
                    let Ok(permit) = connections.try_acquire_owned() else {
                        stats.refused_full.fetch_add(1, Relaxed);
                        tracing::warn!(%remote, max = limits.max_connections, "connection refused: max_connections are open");
                        return;
                    };
                    (permit, None, Some(slot))
                }
                Err(n) => {
                    let Ok(permit) = refused.clone().try_acquire_owned() else { return };
                    let why: Arc<str> = Arc::from(format!(
                        "{key} already holds {n} connections (max_connections_per_participant = {}); reuse one",
                        limits.max_connections_per_participant
                    ));
                    (permit, Some(why), None)
                }
            };
            let idle_timeout = if refusal.is_some() { REFUSED_LINGER } else { limits.idle_timeout };
            let peer = Peer { subject, cert_sha256, client_auth, refusal, activity: Arc::new(Activity::default()) };
            let conn = Conn {
                inner: tls,
                peer,
                idle_timeout,
                idle_seen: None,
                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                _permit: permit,
                _slot: slot,
            };
            let _ = out.send(Ok(conn)).await;
        });
    }
}

/// The subject common name, the SHA-256 and whether the verified client certificate names the
/// clientAuth usage.
fn subject_of(tls: &TlsStream<TcpStream>) -> (Option<Arc<str>>, Arc<str>, bool) {
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return (None, Arc::from(""), false);
    };
    let fingerprint: Arc<str> = hex::encode(digest::digest(&digest::SHA256, leaf.as_ref())).into();
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else { return (None, fingerprint, false) };
    let subject = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(Arc::from);
    let client_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    (subject, fingerprint, client_auth)
}

/// The rustls configuration of the listener: the server's chain and key, client certificates
/// required and verified against `client_ca`, HTTP/2 only.
///
/// # Errors
/// PEM that does not parse, or a key rustls does not accept.
pub fn tls_config(cert: &str, key: &str, client_ca: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the server certificate (tls_cert) does not parse")?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("the server key (tls_key) does not parse")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(ca.context("the client CA (client_ca) does not parse")?).context("the client CA (client_ca)")?;
    }
    anyhow::ensure!(!roots.is_empty(), "the client CA file (client_ca) holds no certificate");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the client CA (client_ca)")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate and key (tls_cert, tls_key)")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Raises the process's open-file soft limit to its hard limit; returns the new soft limit.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}
