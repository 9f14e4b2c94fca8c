//! The whole rig assembled against the built-in virtual lab (the real
//! `redrig lab-process` simulators), exactly as a run does it.

use redrig::clock::Clock;
use redrig::config::load_rig;
use redrig::drivers::{Mark, NameService};
use redrig::error::RigError;
use redrig::gateway::FlowEvent;
use redrig::rig::Rig;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_boots_reaches_its_backend_through_the_gateway_and_everything_stops() {
    let mut loaded = load_rig(&root().join("fixtures/rigs/virtual.yaml"), None).unwrap();
    // Trust the fixtures' CA for the parent API.
    loaded.device.device.backend.api.ca = Some(root().join("fixtures/certs/ca.pem"));
    let ev = tempfile::tempdir().unwrap();
    let clock = Clock::start(loaded.rig.time.scale);
    let rig = Rig::assemble(
        &loaded,
        Path::new(env!("CARGO_BIN_EXE_redrig")),
        clock,
        ev.path(),
    )
    .await
    .unwrap();
    let lab = rig.lab().expect("a virtual rig runs a lab");
    let pids = lab.pids();
    let run_dir = lab.runtime_dir().to_path_buf();
    rig.check().unwrap();

    rig.power.set(true).await.unwrap();
    let boot = rig
        .console
        .log()
        .wait_for(Mark(0), 60.0, |l| l.text.contains("booted"))
        .await;
    assert!(boot.is_some(), "no boot line on the console");

    // The watch resolved its backend through the modem, and the gateway relayed it.
    let host = loaded.device.device.backend.device_endpoint.host.clone();
    let port = loaded.device.device.backend.device_endpoint.port;
    let opened = rig
        .gateway
        .flows()
        .wait_for(Mark(0), 120.0, {
            let host = host.clone();
            move |e| matches!(e, FlowEvent::Opened { host: h, .. } if *h == host)
        })
        .await
        .expect("the watch connected to its backend");
    let FlowEvent::Opened {
        id,
        port: p,
        upstream,
        ..
    } = opened.value
    else {
        unreachable!()
    };
    assert_eq!(p, port);
    assert_eq!(
        upstream.as_deref(),
        Some(rig.lab().unwrap().wires().cloud_device.to_string().as_str())
    );
    rig.gateway
        .flows()
        .wait_for(
            Mark(0),
            60.0,
            move |e| matches!(e, FlowEvent::Detected { id: i, .. } if *i == id),
        )
        .await
        .unwrap();
    let flow = rig
        .gateway
        .summaries()
        .into_iter()
        .find(|f| f.id == id)
        .unwrap();
    let tls = flow.tls.expect("the reference watch speaks TLS");
    assert_eq!(tls.sni.as_deref(), Some(host.as_str()));
    assert!(tls.version >= 0x0303);
    assert_eq!(rig.gateway.address_of(&host), rig.gateway.resolve(&host));

    // The rig reaches the parent API as the internet does (HTTPS, verified).
    assert!(rig.backend.api_is_tls());
    let acct = &loaded.device.device.backend.accounts.parent;
    let password = redrig::config::resolve_secret(&acct.password).unwrap();
    let body = serde_json::json!({"email": acct.email, "password": password});
    let r = rig
        .backend
        .request("POST", "/api/login", None, Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        r.body
    );
    // The reference device endpoint wants a client certificate: the rig, without
    // one, is refused in TLS (not a dead server).
    let err = rig
        .backend
        .device_endpoint_exchange(
            b"[3G*3456789012*0002*LK]",
            std::time::Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");

    rig.shutdown().await.unwrap();
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "simulator {p} survived the shutdown"
        );
    }
    assert!(!run_dir.exists());
    for f in [
        "flows.jsonl",
        "gpio.log",
        "modem.log",
        "console-watch.log",
        "lab-watch.stderr",
        "lab-cloud.stderr",
    ] {
        assert!(ev.path().join(f).exists(), "{f} missing from the evidence");
    }
    assert!(
        ev.path()
            .join(format!("flow-{id}-up.bin"))
            .metadata()
            .unwrap()
            .len()
            > 0
    );
    let modem = std::fs::read_to_string(ev.path().join("modem.log")).unwrap();
    assert!(
        modem.contains(&format!("AT+QIDNSGIP=1,\"{host}\"")),
        "{modem}"
    );
}

#[tokio::test]
async fn a_physical_bench_without_pi_gpio_is_a_clear_instrument_error() {
    if std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
    {
        eprintln!("running on a Raspberry Pi: skipping the non-Pi check");
        return;
    }
    let loaded = load_rig(&root().join("fixtures/rigs/pi-bench.yaml"), None).unwrap();
    let ev = tempfile::tempdir().unwrap();
    let err = Rig::assemble(
        &loaded,
        Path::new(env!("CARGO_BIN_EXE_redrig")),
        Clock::start(1.0),
        ev.path(),
    )
    .await
    .err()
    .expect("no GPIO on this machine");
    // An instrument error (an inconclusive verdict), never a panic or a device
    // failure; the probe-rs flasher and debug port are accepted on the way.
    let RigError::Instrument { instrument, detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(instrument, "gpio");
    assert!(
        detail.starts_with("GPIO unavailable: this machine is not a Raspberry Pi"),
        "{detail}"
    );
}
