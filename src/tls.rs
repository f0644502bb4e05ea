//! HTTPS and WSS on the HTTP listener when `tls_cert` and `tls_key` are configured: rustls
//! with the aws-lc-rs provider (the crypto str0m already builds). A renewed certificate
//! (files replaced on disk, e.g. by certbot) is picked up by new connections without a
//! restart: [`ReloadingCert`] looks at the files' metadata at most every
//! [`RELOAD_CHECK_EVERY`] and re-reads them when it changed, keeping the old certificate
//! while the new files do not load (logged once per change).

use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often a handshake may look at the files (two `stat`s). A renewal is seen within this.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The configured certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert and tls_key: set both or neither (tls_cert is {cert}, tls_key is {key})")]
    Incomplete {
        cert: &'static str,
        key: &'static str,
    },
    #[error("{option} {path}: cannot read: {source}")]
    Read {
        option: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("tls_cert {path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it ({detail})")]
    NoCert { path: PathBuf, detail: String },
    #[error("tls_key {path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("tls_cert {cert} with tls_key {key}: {source}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// The provider lacks what the default protocol versions need: a build problem.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// `tls_cert`/`tls_key` as configured: both (TLS on), neither (plain HTTP), else an error.
pub fn files(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsFiles>, TlsError> {
    let set = |p: Option<&Path>| if p.is_some() { "set" } else { "unset" };
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(TlsFiles {
            cert: c.to_path_buf(),
            key: k.to_path_buf(),
        })),
        (None, None) => Ok(None),
        _ => Err(TlsError::Incomplete {
            cert: set(cert),
            key: set(key),
        }),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks the pair: the chain parses, the key parses and matches the first
/// certificate. What a start and `--check-config` run, and each reload.
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |option, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            option,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("tls_cert", &files.cert)?;
    let key_pem = read("tls_key", &files.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCert {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: files.cert.clone(),
            detail: "empty".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

/// What identifies one version of the files: replacing either (rename or rewrite) changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<(Option<SystemTime>, u64, u64)>);

impl Stamp {
    /// None while a file is missing (mid-replacement): nothing to load yet.
    fn of(files: &TlsFiles) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        };
        Some(Stamp(vec![one(&files.cert)?, one(&files.key)?]))
    }
}

/// Whether a handshake at `now` should look at the files, last looked at `checked`.
pub fn check_due(checked: Instant, now: Instant, every: Duration) -> bool {
    now.saturating_duration_since(checked) >= every
}

/// Whether files seen as `seen` should be loaded: they differ from the loaded ones, and are
/// not the version that already failed (logged once, retried only once they change again).
pub fn should_load(loaded: &Stamp, failed: Option<&Stamp>, seen: &Stamp) -> bool {
    seen != loaded && failed != Some(seen)
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    failed: Option<Stamp>,
    checked: Instant,
}

/// The server's certificate, re-read when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    every: Duration,
    current: Mutex<Current>,
}

impl ReloadingCert {
    pub fn new(files: TlsFiles, every: Duration) -> Result<Self, TlsError> {
        let provider = provider();
        // Stamp first: a replacement between the two is then seen as a change, not missed.
        let stamp = Stamp::of(&files).unwrap_or(Stamp(Vec::new()));
        let key = Arc::new(load(&files, &provider)?);
        Ok(ReloadingCert {
            files,
            provider,
            every,
            current: Mutex::new(Current {
                key,
                stamp,
                failed: None,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate for a handshake at `now`, reloaded first if its files changed.
    fn get(&self, now: Instant) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic mid-check; the state itself stays consistent.
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if check_due(cur.checked, now, self.every) {
            cur.checked = now;
            // Blocking file IO in a handshake: two stats every few seconds, and a read of two
            // small files on a change; cheaper than a watcher task.
            if let Some(seen) = Stamp::of(&self.files) {
                if should_load(&cur.stamp, cur.failed.as_ref(), &seen) {
                    match load(&self.files, &self.provider) {
                        Ok(key) => {
                            tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                            cur.key = Arc::new(key);
                            cur.stamp = seen;
                            cur.failed = None;
                        }
                        Err(e) => {
                            tracing::warn!(
                                "TLS certificate not reloaded, keeping the old one: {e}"
                            );
                            cur.failed = Some(seen);
                        }
                    }
                }
            }
        }
        cur.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get(Instant::now()))
    }
}

/// The acceptor for the HTTP listener: HTTP/1.1 only (what axum serves here).
pub fn acceptor(files: TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let resolver = Arc::new(ReloadingCert::new(files, RELOAD_CHECK_EVERY)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A connection of the HTTP listener: plain, or TLS whose handshake runs on the first read
/// or write. Lazily, so a slow handshake holds only its own connection, never the accept
/// loop, and falls under the same HTTP deadline as a slow request.
pub enum MaybeTls<S> {
    Plain(S),
    /// Boxed: the handshake state is over 1 KiB, the streams a few bytes.
    Handshake(Box<tokio_rustls::Accept<S>>),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    Failed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    pub fn new(stream: S, tls: Option<&tokio_rustls::TlsAcceptor>) -> Self {
        match tls {
            Some(acceptor) => MaybeTls::Handshake(Box::new(acceptor.accept(stream))),
            None => MaybeTls::Plain(stream),
        }
    }

    /// Drives the handshake; ready once the stream is plain or TLS.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let MaybeTls::Handshake(accept) = self {
            match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                Ok(stream) => *self = MaybeTls::Tls(Box::new(stream)),
                Err(e) => {
                    *self = MaybeTls::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match self {
            MaybeTls::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake failed",
            ))),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            // poll_handshake returned Ok: neither remains.
            MaybeTls::Handshake(_) | MaybeTls::Failed => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, data),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            MaybeTls::Handshake(_) | MaybeTls::Failed => Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Handshake(_) | MaybeTls::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTls::Handshake(_) | MaybeTls::Failed => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
            MaybeTls::Handshake(_) | MaybeTls::Failed => false,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Handshake(_) | MaybeTls::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let p = Path::new("/x.pem");
        assert!(matches!(files(None, None), Ok(None)));
        assert!(matches!(files(Some(p), Some(p)), Ok(Some(_))));
        let err = files(Some(p), None).unwrap_err().to_string();
        assert!(err.contains("set both or neither"), "{err}");
        assert!(files(None, Some(p)).is_err());
    }

    #[test]
    fn files_are_looked_at_every_few_seconds_at_most() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let at = |ms| t0 + Duration::from_millis(ms);
        for (ms, due) in [(0, false), (4_999, false), (5_000, true), (60_000, true)] {
            assert_eq!(check_due(t0, at(ms), every), due, "{ms} ms");
        }
        // A clock that went backwards is not a reason to look.
        assert!(!check_due(at(1_000), t0, every));
    }

    #[test]
    fn only_changed_files_not_already_refused_are_loaded() {
        let stamp = |n: u64| Stamp(vec![(None, n, 1), (None, 10, 2)]);
        let (old, new, newer) = (stamp(1), stamp(2), stamp(3));
        // (loaded, failed, seen, load?)
        let cases = [
            (&old, None, &old, false),
            (&old, None, &new, true),
            (&old, Some(&new), &new, false),
            (&old, Some(&new), &newer, true),
            (&old, Some(&new), &old, false),
        ];
        for (i, (loaded, failed, seen, want)) in cases.into_iter().enumerate() {
            assert_eq!(should_load(loaded, failed, seen), want, "case {i}");
        }
    }
}
