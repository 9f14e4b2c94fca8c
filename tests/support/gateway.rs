//! What the gateway's integration tests share: the backend host they relay, an echo
//! upstream, and a gateway started the way the rig starts it.

use redrig::clock::Clock;
use redrig::gateway::{Gateway, GatewaySpec, HostRoute, SINKHOLE_PORTS};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The device endpoint's host and port, as the reference profile names them.
pub const HOST: &str = "watch.kidcloud.example";
pub const PORT: u16 = 6443;

/// An upstream that echoes everything back.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A gateway relaying [`HOST`]:[`PORT`] to `upstream` (no upstream: every host is a
/// sinkhole), with the standard sinkhole ports.
pub async fn start_gateway(
    upstream: Option<SocketAddr>,
    clock: Clock,
    evidence: &Path,
) -> Arc<Gateway> {
    let hosts = upstream
        .map(|u| HostRoute {
            host: HOST.into(),
            relay_ports: BTreeSet::from([PORT]),
            upstream: Some(u.to_string()),
        })
        .into_iter()
        .collect();
    Gateway::start(GatewaySpec {
        gateway: None,
        hosts,
        profile_ports: BTreeSet::from([PORT]),
        sinkhole_ports: SINKHOLE_PORTS.to_vec(),
        clock,
        evidence_dir: evidence.to_path_buf(),
    })
    .await
    .unwrap()
}
