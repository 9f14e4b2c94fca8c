//! The gateway's attacker roles against real TLS clients: a client that validates the
//! server (pinned test CA) refuses the forged certificate and sends nothing; a client
//! that does not validate is exposed, and the man in the middle relays and reads its
//! traffic; a clear-text client is read as it is.

#[path = "support/gateway.rs"]
mod gw;
use gw::{start_gateway, tcp_echo, HOST, PORT};
use redrig::clock::Clock;
use redrig::drivers::{Mark, NameService};
use redrig::gateway::{FlowEvent, ForgedCert, Gateway, Handshake, HostMode, Interception};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: f64 = 20_000.0;
const FRAME: &[u8] = b"[3G*8612345678*0009*LK,0,0,90]";

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/certs")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
    let data = std::fs::read(certs().join(name)).unwrap();
    rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn pem_key(name: &str) -> PrivateKeyDer<'static> {
    let data = std::fs::read(certs().join(name)).unwrap();
    rustls_pemfile::private_key(&mut data.as_slice())
        .unwrap()
        .unwrap()
}

/// The real backend: TLS with the cloud's certificate, no client certificate asked;
/// answers every read with `ECHO:` + the bytes.
async fn tls_backend() -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pem_certs("cloud.pem"), pem_key("cloud.key"))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = b"ECHO:".to_vec();
                    out.extend_from_slice(&buf[..n]);
                    if tls.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A watch-like TLS client: pinned to the test CA, or accepting anything.
fn client(validating: bool) -> tokio_rustls::TlsConnector {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let c = if validating {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs("ca.pem") {
            roots.add(c).unwrap();
        }
        b.with_root_certificates(roots).with_no_client_auth()
    } else {
        b.dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck(provider())))
            .with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(c))
}

#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect(gw: &Gateway) -> TcpStream {
    let addr = gw.resolve(HOST).expect("resolves");
    TcpStream::connect((addr, PORT)).await.unwrap()
}

/// The outcome recorded when the (only) intercepted flow ended.
async fn outcome(gw: &Gateway) -> Interception {
    let ev = gw
        .flows()
        .wait_for(Mark(0), WAIT, |e| {
            matches!(e, FlowEvent::Intercepted { .. })
        })
        .await
        .expect("an intercepted flow ended");
    match ev.value {
        FlowEvent::Intercepted { outcome, .. } => outcome,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validating_client_refuses_both_forged_certificates_and_sends_nothing() {
    for cert in [ForgedCert::SelfSigned, ForgedCert::UntrustedCa] {
        for mode in [HostMode::Rogue { cert }, HostMode::Mitm { cert }] {
            let dir = tempfile::tempdir().unwrap();
            let gw =
                start_gateway(Some(tls_backend().await), Clock::start(1000.0), dir.path()).await;
            gw.set_host_mode(HOST, mode).unwrap();
            assert_eq!(gw.host_mode(HOST), mode);
            let tcp = connect(&gw).await;
            let r = client(true)
                .connect(ServerName::try_from(HOST).unwrap(), tcp)
                .await;
            let Err(err) = r else {
                panic!("the pinned client accepted the forgery")
            };
            assert!(
                err.to_string().to_lowercase().contains("certificate"),
                "{err}"
            );
            let o = outcome(&gw).await;
            assert!(matches!(o.handshake, Handshake::Refused { .. }), "{o:?}");
            assert_eq!(o.plaintext_up, 0);
            assert!(!o.exposed());
            assert_eq!(o.certificate, cert);
            // Classified like any flow: a TLS client and the name it asked for.
            let s = gw.summaries().pop().unwrap();
            assert_eq!(s.tls.and_then(|t| t.sni).as_deref(), Some(HOST));
            gw.shutdown().await.unwrap();
            // The attacker's CA is part of the evidence.
            assert!(std::fs::read_to_string(dir.path().join("attacker-ca.pem"))
                .unwrap()
                .contains("BEGIN CERTIFICATE"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_validating_client_is_read_and_relayed_by_the_man_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tls_backend().await), Clock::start(1000.0), dir.path()).await;
    gw.set_host_mode(
        HOST,
        HostMode::Mitm {
            cert: ForgedCert::UntrustedCa,
        },
    )
    .unwrap();
    let tcp = connect(&gw).await;
    let mut tls = client(false)
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .expect("the careless client accepts the forgery");
    // The certificate it got is the attacker's, for the name it asked.
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    assert!(leaf.windows(HOST.len()).any(|w| w == HOST.as_bytes()));
    tls.write_all(FRAME).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 5 + FRAME.len() {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..5], b"ECHO:", "relayed to the real backend and back");
    assert_eq!(&got[5..], FRAME);
    drop(tls);
    let o = outcome(&gw).await;
    assert!(matches!(o.handshake, Handshake::Accepted { .. }), "{o:?}");
    assert_eq!(o.plaintext_up, FRAME.len() as u64);
    assert_eq!(o.plaintext_down, (5 + FRAME.len()) as u64);
    assert!(o.exposed());
    assert!(o.upstream.as_deref().unwrap().contains("relayed over TLS"));
    // The decrypted frame was decoded like a clear-text one.
    assert!(gw.flows().since(Mark(0)).iter().any(
        |e| matches!(&e.value, FlowEvent::Frame { frame, .. } if frame.contains("LK,0,0,90"))
    ));
    gw.shutdown().await.unwrap();
    let plain = std::fs::read(dir.path().join("flow-1-up.plain")).unwrap();
    assert_eq!(plain, FRAME);
    // The wire evidence holds the TLS records, not the frame.
    let wire = std::fs::read(dir.path().join("flow-1-up.bin")).unwrap();
    assert_eq!(wire[0], 0x16);
    assert!(!wire.windows(FRAME.len()).any(|w| w == FRAME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_server_reads_a_careless_client_and_answers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tls_backend().await), Clock::start(1000.0), dir.path()).await;
    gw.set_host_mode(
        HOST,
        HostMode::Rogue {
            cert: ForgedCert::SelfSigned,
        },
    )
    .unwrap();
    let tcp = connect(&gw).await;
    let mut tls = client(false)
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(FRAME).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let answered = tokio::time::timeout(std::time::Duration::from_millis(300), tls.read(&mut buf))
        .await
        .is_ok();
    assert!(!answered, "a rogue server answers nothing");
    tls.shutdown().await.unwrap();
    drop(tls);
    let o = outcome(&gw).await;
    assert!(matches!(o.handshake, Handshake::Accepted { .. }));
    assert_eq!(o.plaintext_up, FRAME.len() as u64);
    assert_eq!(o.plaintext_down, 0);
    assert_eq!(o.upstream, None);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_is_read_as_it_is_and_modes_can_be_cleared() {
    let dir = tempfile::tempdir().unwrap();
    // A plain echo upstream for the clear-text relay.
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), dir.path()).await;
    gw.set_host_mode(
        HOST,
        HostMode::Mitm {
            cert: ForgedCert::SelfSigned,
        },
    )
    .unwrap();
    let mut s = connect(&gw).await;
    s.write_all(FRAME).await.unwrap();
    let mut back = vec![0u8; FRAME.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, FRAME);
    drop(s);
    let o = outcome(&gw).await;
    assert_eq!(o.handshake, Handshake::NotTls);
    assert_eq!(o.plaintext_up, FRAME.len() as u64);
    assert!(o.exposed());
    // Back to normal: no interception any more.
    gw.clear_host_modes();
    assert_eq!(gw.host_mode(HOST), HostMode::Normal);
    let mark = gw.flows().mark();
    let mut s = connect(&gw).await;
    s.write_all(FRAME).await.unwrap();
    s.read_exact(&mut back).await.unwrap();
    drop(s);
    gw.flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Closed { .. }))
        .await
        .unwrap();
    let later = gw.summaries().into_iter().last().unwrap();
    assert_eq!(later.intercept, None);
    gw.shutdown().await.unwrap();
}

/// Without an attacker, the relayed flow is classified from both hellos: the version
/// and suite the server chose, and — where TLS 1.2 sends it in clear — the server's
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_tls_is_classified_from_the_server_hello_and_certificate() {
    for (version, name) in [
        (&rustls::version::TLS12, 0x0303u16),
        (&rustls::version::TLS13, 0x0304u16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let gw = start_gateway(Some(tls_backend().await), Clock::start(1000.0), dir.path()).await;
        let c = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck(provider())))
            .with_no_client_auth();
        let tcp = connect(&gw).await;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(c))
            .connect(ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(FRAME).await.unwrap();
        let mut buf = [0u8; 128];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"ECHO:"));
        drop(tls);
        gw.flows()
            .wait_for(Mark(0), WAIT, |e| matches!(e, FlowEvent::Closed { .. }))
            .await
            .unwrap();
        let s = gw.summaries().pop().unwrap();
        assert_eq!(s.intercept, None);
        gw.shutdown().await.unwrap();
        // The summary with the server's side is in the evidence too.
        let written: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(redrig::gateway::SUMMARY_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            written["flows"][0]["server_tls"]["version"].as_u64(),
            Some(name as u64)
        );
        let server = s.server_tls.clone().unwrap_or_else(|| panic!("{s:?}"));
        assert_eq!(server.version, name);
        assert!(server.cipher_suite_name().is_some(), "{server:?}");
        match name {
            0x0303 => {
                let cert = server.certificate.expect("TLS 1.2 shows the certificate");
                assert!(cert.dns_names.iter().any(|n| n == HOST), "{cert:?}");
                assert!(!cert.self_signed);
            }
            _ => assert_eq!(server.certificate, None, "TLS 1.3 encrypts it"),
        }
    }
}
