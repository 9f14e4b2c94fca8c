//! The device's cloud as the rig reaches it: the parent-app HTTP(S) API and the raw
//! device endpoint (`docs/virtual-hardware.md` §9).
//!
//! The rig connects like any internet host would, to the address `network.hosts`
//! gives for the host (the lab's cloud, or a real `HOST:PORT`), not through the
//! watch's cell gateway.
//!
//! - API: HTTP/1.1 on hyper's connection-level client, one connection per request,
//!   over TCP or TLS (rustls, ring). Trust is the CA file of
//!   `device.backend.api.ca` and nothing else; an HTTPS API without a configured CA
//!   is not trusted at all (every request fails closed). SNI and `Host` are the base
//!   URL's host. JSON in and out, response bodies capped at [`MAX_BODY`], every
//!   request bounded by a wall-time timeout.
//! - Device endpoint: [`Backend::device_endpoint_exchange`] opens plain TCP or TLS
//!   **without** a client certificate, as an attacker on the internet would. The
//!   server's certificate is deliberately *not* verified there (an attacker does
//!   not care who the server is; the question is whether the server lets a client
//!   without a certificate in).
//!
//! A TLS failure is reported as `TLS handshake failed: …` (including a fatal alert
//! the server sends right after the handshake, as TLS 1.3 servers do when they
//! require a client certificate), distinct from `connection refused` and timeouts,
//! so a step can tell a server that refuses the rig from one that is dead.

use crate::config::{LoadedRig, PortRef};
use crate::drivers::{ApiResponse, Backend};
use crate::error::{RigError, RigResult};
use crate::gateway::BaseUrl;
use crate::lab::Lab;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const INSTRUMENT: &str = "backend";
/// Largest response body read from the API.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest answer kept from the device endpoint.
pub const MAX_EXCHANGE: usize = 1024 * 1024;
/// Default wall-time limit of one API request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach the backend.
#[derive(Debug, Clone)]
pub struct HttpBackendConfig {
    /// `device.backend.api.base_url`.
    pub base_url: String,
    /// `HOST:PORT` the API is reached at.
    pub api_addr: String,
    /// CA certificate(s) (PEM) trusted for the API.
    pub ca: Option<PathBuf>,
    /// `device.backend.device_endpoint.host` (SNI for the device endpoint).
    pub device_host: String,
    /// `HOST:PORT` the device endpoint is reached at.
    pub device_addr: String,
    /// Whether the device endpoint speaks TLS.
    pub device_tls: bool,
    /// Wall-time limit of one API request.
    pub timeout: Duration,
}

impl HttpBackendConfig {
    /// The one place this driver reads the configuration.
    pub fn from_config(loaded: &LoadedRig, lab: Option<&Lab>) -> RigResult<HttpBackendConfig> {
        let dev = &loaded.device.device;
        let api = BaseUrl::parse(&dev.backend.api.base_url).map_err(RigError::Config)?;
        let lookup = |host: &str| -> RigResult<String> {
            let found = loaded
                .rig
                .network
                .hosts
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(host))
                .map(|(_, t)| t);
            match found {
                Some(PortRef::Real(s)) => Ok(s.clone()),
                Some(PortRef::Lab(w)) => lab.map(|l| l.wires().get(*w)).ok_or_else(|| {
                    RigError::Config(format!(
                        "network.hosts.{host} is `lab:{}` but no lab is running",
                        w.name()
                    ))
                }),
                None => Err(RigError::Config(format!(
                    "network.hosts has no entry for `{host}`"
                ))),
            }
        };
        let ep = &dev.backend.device_endpoint;
        Ok(HttpBackendConfig {
            base_url: dev.backend.api.base_url.clone(),
            api_addr: lookup(&api.host)?,
            ca: dev.backend.api.ca.clone(),
            device_host: ep.host.clone(),
            device_addr: lookup(&ep.host)?,
            device_tls: ep.tls,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// The backend client. See the module documentation.
pub struct HttpBackend {
    cfg: HttpBackendConfig,
    base: BaseUrl,
    /// TLS for the API (trusting the configured CA only).
    api_tls: Option<tokio_rustls::TlsConnector>,
    /// TLS for the device endpoint (no client certificate, server not verified).
    device_tls: tokio_rustls::TlsConnector,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Load every certificate of a PEM file.
pub fn load_ca(path: &Path) -> RigResult<rustls::RootCertStore> {
    let data = std::fs::read(path)
        .map_err(|e| RigError::Config(format!("CA file {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut data.as_slice()) {
        let cert =
            cert.map_err(|e| RigError::Config(format!("CA file {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| RigError::Config(format!("CA file {}: {e}", path.display())))?;
        n += 1;
    }
    if n == 0 {
        return Err(RigError::Config(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// Accepts any server certificate (signatures in the handshake are still checked):
/// only where the rig plays an attacker (the device-endpoint probe, the gateway's
/// man in the middle).
#[derive(Debug)]
pub(crate) struct AnyServer(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The rustls error inside an I/O error, if any.
fn tls_cause(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn tls_failed(detail: impl std::fmt::Display) -> RigError {
    RigError::instrument(INSTRUMENT, format!("TLS handshake failed: {detail}"))
}

impl HttpBackend {
    pub fn new(cfg: HttpBackendConfig) -> RigResult<HttpBackend> {
        let base = BaseUrl::parse(&cfg.base_url).map_err(RigError::Config)?;
        let versions = |b: rustls::ConfigBuilder<ClientConfig, rustls::WantsVersions>| {
            b.with_safe_default_protocol_versions()
                .map_err(|e| RigError::Other(format!("TLS configuration: {e}")))
        };
        let api_tls = if base.https {
            let roots = match &cfg.ca {
                Some(ca) => load_ca(ca)?,
                // Fail closed: trust nothing.
                None => rustls::RootCertStore::empty(),
            };
            let c = versions(ClientConfig::builder_with_provider(provider()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(c)))
        } else {
            None
        };
        let p = provider();
        let device = versions(ClientConfig::builder_with_provider(p.clone()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(p)))
            .with_no_client_auth();
        Ok(HttpBackend {
            cfg,
            base,
            api_tls,
            device_tls: tokio_rustls::TlsConnector::from(Arc::new(device)),
        })
    }

    /// The backend of a loaded configuration (addresses through `network.hosts`).
    pub fn from_config(loaded: &LoadedRig, lab: Option<&Lab>) -> RigResult<Arc<HttpBackend>> {
        Ok(Arc::new(HttpBackend::new(HttpBackendConfig::from_config(
            loaded, lab,
        )?)?))
    }

    async fn connect(addr: &str, what: &str) -> RigResult<TcpStream> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(RigError::instrument(
                INSTRUMENT,
                format!("{what} {addr}: connection failed: {e}"),
            )),
            Err(_) => Err(RigError::instrument(
                INSTRUMENT,
                format!("{what} {addr}: no connection within {CONNECT_TIMEOUT:?}"),
            )),
        }
    }

    async fn api_stream(&self) -> RigResult<Box<dyn Io>> {
        let tcp = HttpBackend::connect(&self.cfg.api_addr, "API").await?;
        let Some(tls) = &self.api_tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(self.base.host.clone())
            .map_err(|e| RigError::Config(format!("API host `{}`: {e}", self.base.host)))?;
        match tls.connect(name, tcp).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => {
                let hint = if self.cfg.ca.is_none() {
                    " (no CA is configured in device.backend.api.ca, so the rig trusts no server)"
                } else {
                    ""
                };
                Err(tls_failed(format!(
                    "{}{hint}",
                    tls_cause(&e)
                        .map(|t| t.to_string())
                        .unwrap_or(e.to_string())
                )))
            }
        }
    }

    async fn request_inner(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> RigResult<ApiResponse> {
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| RigError::Other(format!("`{method}` is not an HTTP method")))?;
        if !path.starts_with('/') {
            return Err(RigError::Other(format!(
                "API path `{path}` must start with `/`"
            )));
        }
        let default_port = if self.base.https { 443 } else { 80 };
        let host_header = if self.base.port == default_port {
            self.base.host.clone()
        } else {
            format!("{}:{}", self.base.host, self.base.port)
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base.path, path))
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "redrig");
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(
                    serde_json::to_vec(v)
                        .map_err(|e| RigError::Other(format!("request body: {e}")))?,
                )
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| RigError::Other(format!("request: {e}")))?;

        let io = self.api_stream().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
                .await
                .map_err(|e| RigError::instrument(INSTRUMENT, format!("HTTP: {e}")))?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = async {
            let resp = sender.send_request(req).await.map_err(|e| {
                let tls = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .and_then(tls_cause)
                    .map(|t| t.to_string());
                match tls {
                    Some(t) => tls_failed(t),
                    None => RigError::instrument(INSTRUMENT, format!("HTTP: {e}")),
                }
            })?;
            let status = resp.status().as_u16();
            let collected = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    RigError::instrument(
                        INSTRUMENT,
                        format!("response body (status {status}): {e} (limit {MAX_BODY} bytes)"),
                    )
                })?;
            let bytes = collected.to_bytes();
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
                })
            };
            Ok(ApiResponse { status, body })
        }
        .await;
        conn_task.abort();
        result
    }
}

#[async_trait]
impl Backend for HttpBackend {
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> RigResult<ApiResponse> {
        match tokio::time::timeout(
            self.cfg.timeout,
            self.request_inner(method, path, token, body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(RigError::instrument(
                INSTRUMENT,
                format!(
                    "{method} {path}: no complete answer within {:?}",
                    self.cfg.timeout
                ),
            )),
        }
    }

    fn api_is_tls(&self) -> bool {
        self.base.https && self.cfg.ca.is_some()
    }

    async fn device_endpoint_exchange(&self, bytes: &[u8], wait: Duration) -> RigResult<Vec<u8>> {
        let tcp = HttpBackend::connect(&self.cfg.device_addr, "device endpoint").await?;
        let mut stream: Box<dyn Io> = if self.cfg.device_tls {
            let name = ServerName::try_from(self.cfg.device_host.clone()).map_err(|e| {
                RigError::Config(format!(
                    "device endpoint host `{}`: {e}",
                    self.cfg.device_host
                ))
            })?;
            match tokio::time::timeout(CONNECT_TIMEOUT, self.device_tls.connect(name, tcp)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    return Err(tls_failed(
                        tls_cause(&e)
                            .map(|t| t.to_string())
                            .unwrap_or(e.to_string()),
                    ))
                }
                Err(_) => {
                    return Err(tls_failed(format!(
                        "no handshake within {CONNECT_TIMEOUT:?}"
                    )))
                }
            }
        } else {
            Box::new(tcp)
        };
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        let exchange = async {
            stream.write_all(bytes).await?;
            stream.flush().await?;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                let room = MAX_EXCHANGE - out.len();
                out.extend_from_slice(&buf[..n.min(room)]);
                if out.len() >= MAX_EXCHANGE {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) | Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => match tls_cause(&e) {
                // A TLS alert before any application data: the server refused us
                // (TLS 1.3 servers reject a missing client certificate this way).
                Some(t) if out.is_empty() => Err(tls_failed(t)),
                _ if !out.is_empty() => Ok(out),
                // Reset or closed without answering.
                _ if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::BrokenPipe
                ) =>
                {
                    Ok(out)
                }
                _ => Err(RigError::instrument(
                    INSTRUMENT,
                    format!("device endpoint: {e}"),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::net::TcpListener;

    /// An API stand-in: echoes what it got as JSON; `/empty` answers 204, `/big`
    /// answers a body over the cap.
    async fn serve_http(stream: impl Io + 'static) {
        let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let resp = match parts.uri.path() {
                "/v1/empty" => hyper::Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new())),
                "/v1/big" => hyper::Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from(vec![b' '; MAX_BODY + 10]))),
                "/v1/text" => hyper::Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::from_static(b"oops"))),
                _ => {
                    let h = |n: hyper::header::HeaderName| {
                        parts
                            .headers
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_string())
                    };
                    let echo = serde_json::json!({
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                        "host": h(hyper::header::HOST),
                        "auth": h(hyper::header::AUTHORIZATION),
                        "type": h(hyper::header::CONTENT_TYPE),
                        "body": serde_json::from_slice::<serde_json::Value>(&body).ok(),
                    });
                    hyper::Response::builder()
                        .status(201)
                        .body(Full::new(Bytes::from(echo.to_string())))
                }
            };
            Ok::<_, std::convert::Infallible>(resp.unwrap())
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    }

    fn cfg(base_url: &str, api_addr: String, ca: Option<PathBuf>) -> HttpBackendConfig {
        HttpBackendConfig {
            base_url: base_url.into(),
            api_addr,
            ca,
            device_host: "watch.kidcloud.example".into(),
            device_addr: "127.0.0.1:9".into(),
            device_tls: false,
            timeout: Duration::from_secs(20),
        }
    }

    struct Cert {
        pem: String,
        der: CertificateDer<'static>,
        key: Vec<u8>,
    }

    fn cert(name: &str) -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Cert {
            pem: ck.cert.pem(),
            der: ck.cert.der().clone(),
            key: ck.signing_key.serialize_der(),
        }
    }

    fn server_tls(c: &Cert, client_ca: Option<&Cert>) -> tokio_rustls::TlsAcceptor {
        let p = provider();
        let b = rustls::ServerConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            None => b.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p)
                        .build()
                        .unwrap();
                b.with_client_cert_verifier(v)
            }
        };
        let config = b
            .with_single_cert(
                vec![c.der.clone()],
                PrivateKeyDer::Pkcs8(c.key.clone().into()),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    async fn listen() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    #[tokio::test]
    async fn plain_http_json_round_trip() {
        let (l, addr) = listen().await;
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve_http(s));
            }
        });
        let b = HttpBackend::new(cfg("http://API.kidcloud.example:8080/v1/", addr, None)).unwrap();
        assert!(!b.api_is_tls());
        let body = serde_json::json!({"email": "parent@example.org", "password": "pw"});
        let r = b
            .request("POST", "/api/login", Some("tok123"), Some(&body))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body["method"], "POST");
        assert_eq!(r.body["path"], "/v1/api/login");
        assert_eq!(r.body["host"], "api.kidcloud.example:8080");
        assert_eq!(r.body["auth"], "Bearer tok123");
        assert_eq!(r.body["type"], "application/json");
        assert_eq!(r.body["body"], body);
        let r = b.request("GET", "/empty", None, None).await.unwrap();
        assert_eq!((r.status, r.body), (204, serde_json::Value::Null));
        let r = b.request("GET", "/text", None, None).await.unwrap();
        assert_eq!(
            (r.status, r.body),
            (500, serde_json::Value::String("oops".into()))
        );
        let err = b.request("GET", "/big", None, None).await.unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(b.request("GET", "no-slash", None, None).await.is_err());
    }

    #[tokio::test]
    async fn https_trusts_the_configured_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let server_cert = cert("api.kidcloud.example");
        let other = cert("api.kidcloud.example");
        let (l, addr) = listen().await;
        let acceptor = server_tls(&server_cert, None);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        serve_http(tls).await;
                    }
                });
            }
        });
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &server_cert.pem).unwrap();
        let wrong = dir.path().join("wrong.pem");
        std::fs::write(&wrong, &other.pem).unwrap();
        let url = "https://api.kidcloud.example:8443/v1";

        let good = HttpBackend::new(cfg(url, addr.clone(), Some(ca))).unwrap();
        assert!(good.api_is_tls());
        let r = good
            .request("GET", "/api/watches", Some("t"), None)
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.body["path"].as_str()),
            (201, Some("/v1/api/watches"))
        );

        let err = HttpBackend::new(cfg(url, addr.clone(), Some(wrong)))
            .unwrap()
            .request("GET", "/x", None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TLS handshake failed"), "{err}");

        let none = HttpBackend::new(cfg(url, addr, None)).unwrap();
        assert!(!none.api_is_tls());
        let err = none.request("GET", "/x", None, None).await.unwrap_err();
        assert!(
            err.to_string().contains("TLS handshake failed")
                && err.to_string().contains("trusts no server"),
            "{err}"
        );

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(matches!(
            HttpBackend::new(cfg(url, "127.0.0.1:1".into(), Some(bad))),
            Err(RigError::Config(_))
        ));
    }

    async fn device_server(acceptor: Option<tokio_rustls::TlsAcceptor>) -> String {
        let (l, addr) = listen().await;
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut io: Box<dyn Io> = match acceptor {
                        Some(a) => match a.accept(s).await {
                            Ok(t) => Box::new(t),
                            Err(_) => return,
                        },
                        None => Box::new(s),
                    };
                    let mut buf = [0u8; 256];
                    if let Ok(n) = io.read(&mut buf).await {
                        if n > 0 {
                            let _ = io.write_all(b"[3G*1234567890*0002*LK]").await;
                            let _ = io.shutdown().await;
                        }
                    }
                });
            }
        });
        addr
    }

    fn device_cfg(addr: String, tls: bool) -> HttpBackendConfig {
        HttpBackendConfig {
            device_addr: addr,
            device_tls: tls,
            ..cfg("http://api.kidcloud.example", "127.0.0.1:9".into(), None)
        }
    }

    #[tokio::test]
    async fn device_endpoint_plain_tls_and_refusals() {
        let frame = b"[3G*1234567890*0002*LK]".to_vec();
        let wait = Duration::from_secs(10);
        let plain = device_server(None).await;
        let b = HttpBackend::new(device_cfg(plain, false)).unwrap();
        assert_eq!(
            b.device_endpoint_exchange(b"[3G*1234567890*0002*LK]", wait)
                .await
                .unwrap(),
            frame
        );

        // A TLS server that does not ask for a client certificate answers.
        let server_cert = cert("watch.kidcloud.example");
        let open = device_server(Some(server_tls(&server_cert, None))).await;
        let b = HttpBackend::new(device_cfg(open, true)).unwrap();
        assert_eq!(
            b.device_endpoint_exchange(b"[3G*1234567890*0002*LK]", wait)
                .await
                .unwrap(),
            frame
        );

        // One that requires a client certificate refuses the rig: a TLS failure.
        let client_ca = cert("parent-ca.example");
        let mutual = device_server(Some(server_tls(&server_cert, Some(&client_ca)))).await;
        let b = HttpBackend::new(device_cfg(mutual, true)).unwrap();
        let err = b
            .device_endpoint_exchange(b"[3G*1234567890*0002*LK]", wait)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TLS handshake failed"), "{err}");

        // A dead endpoint is not a TLS failure.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let b = HttpBackend::new(device_cfg(dead, true)).unwrap();
        let err = b.device_endpoint_exchange(b"x", wait).await.unwrap_err();
        assert!(
            err.to_string().contains("connection failed") && !err.to_string().contains("TLS"),
            "{err}"
        );
    }
}
