//! The virtual lab driven wire by wire through the rig's own drivers — the same code
//! path a physical bench uses. Nothing here reads the simulators' internals: only
//! their console, GNSS line, modem line, GPIO socket, bootloader drive and the data
//! path through the rig's gateway.

use redrig::clock::Clock;
use redrig::config::{load_rig, LoadedRig};
use redrig::drivers::{Button, CellEvent, FlashOutcome, Position};
use redrig::gateway::{Dir, FlowEvent};
use redrig::rig::Rig;
use redrig::strategy::{DeviceState, Strategy};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

async fn lab(dut: &str) -> (LoadedRig, Rig, Strategy, tempfile::TempDir) {
    let loaded =
        load_rig(&fixtures().join("rigs/virtual.yaml"), Some(dut)).expect("shipped rig is valid");
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(loaded.rig.time.scale);
    let rig = Rig::assemble(
        &loaded,
        Path::new(env!("CARGO_BIN_EXE_redrig")),
        clock,
        dir.path(),
    )
    .await
    .expect("the virtual lab starts");
    (loaded, rig, Strategy::new(), dir)
}

async fn connected(dut: &str) -> (LoadedRig, Rig, Strategy, tempfile::TempDir) {
    let (loaded, rig, mut strategy, dir) = lab(dut).await;
    strategy
        .bring_to(&rig, &loaded, DeviceState::Connected, true)
        .await
        .expect("the watch comes online");
    (loaded, rig, strategy, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lines_arrive_after_power_on() {
    let (_loaded, rig, _s, _dir) = lab("reference").await;
    rig.power.set(false).await.unwrap();
    let mark = rig.console.log().mark();
    rig.power.set(true).await.unwrap();
    let line = rig
        .console
        .log()
        .wait_for(mark, 60.0, |l| l.text.contains("booted"))
        .await;
    assert!(line.is_some_and(|l| l.value.text.contains("firmware 2.4.0")));
    rig.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmea_fed_moves_the_position_the_backend_receives() {
    let (loaded, rig, mut strategy, _dir) = connected("reference").await;
    let token = strategy.parent_token(&rig, &loaded).await.unwrap();
    let ws = rig
        .backend
        .request("GET", "/api/watches", Some(&token), None)
        .await
        .unwrap();
    let id = ws.body[0]["id"].as_str().unwrap().to_string();
    let target = Position {
        lat: 48.137154,
        lon: 11.576124,
        alt_m: 520.0,
    };
    rig.gnss.set_position(Some(target)).await.unwrap();
    // Locate now, then wait (device time) for a report near the fed position.
    let body = serde_json::json!({"command": "CR", "args": []});
    let r = rig
        .backend
        .request(
            "POST",
            &format!("/api/watches/{id}/commands"),
            Some(&token),
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    let deadline = rig.clock.deadline(120.0);
    loop {
        let locs = rig
            .backend
            .request(
                "GET",
                &format!("/api/watches/{id}/locations"),
                Some(&token),
                None,
            )
            .await
            .unwrap();
        let near = locs.body.as_array().unwrap().iter().any(|l| {
            (l["lat"].as_f64().unwrap() - target.lat).abs() < 1e-5
                && (l["lon"].as_f64().unwrap() - target.lon).abs() < 1e-5
        });
        if near {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report at the fed position: {}",
            locs.body
        );
        rig.clock.sleep(2.0).await;
    }
    rig.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sos_press_gives_an_alarm_frame_and_a_call_on_the_modem_line() {
    // A clear-text watch, so the alarm frame is visible in the gateway's capture.
    let (loaded, rig, mut strategy, _dir) = connected("safe-kid-one").await;
    let token = strategy.parent_token(&rig, &loaded).await.unwrap();
    let ws = rig
        .backend
        .request("GET", "/api/watches", Some(&token), None)
        .await
        .unwrap();
    let id = ws.body[0]["id"].as_str().unwrap().to_string();
    let parent = loaded.device.device.numbers.parent.clone();
    let body = serde_json::json!({"center": parent, "sos": [parent], "whitelist": []});
    let r = rig
        .backend
        .request(
            "PUT",
            &format!("/api/watches/{id}/numbers"),
            Some(&token),
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    // The settings travel to the watch as frames the rig can see.
    let flows = rig.gateway.flows();
    assert!(flows
        .wait_for(
            flows.mark_since(0),
            30.0,
            |e| matches!(e, FlowEvent::Frame { dir: Dir::Up, frame, .. } if frame.contains("*SOS"))
        )
        .await
        .is_some());

    let (fmark, cmark) = (flows.mark(), rig.cellular.log().mark());
    rig.buttons.press(Button::Sos, 3.0).await.unwrap();
    let al = flows
        .wait_for(
            fmark,
            30.0,
            |e| matches!(e, FlowEvent::Frame { dir: Dir::Up, frame, .. } if frame.contains("*AL,")),
        )
        .await
        .expect("an AL frame");
    let FlowEvent::Frame { frame, .. } = al.value else {
        unreachable!()
    };
    let status = frame
        .trim_end_matches(']')
        .rsplit(',')
        .find(|f| f.len() == 8 && u32::from_str_radix(f, 16).is_ok());
    let bits = u32::from_str_radix(status.expect("a status field"), 16).unwrap();
    assert_ne!(bits & (1 << 16), 0, "SOS bit set in {frame}");
    let call = rig
        .cellular
        .log()
        .wait_for(cmark, 60.0, {
            let parent = parent.clone();
            move |e| matches!(e, CellEvent::WatchDialled { number } if *number == parent)
        })
        .await;
    assert!(
        call.is_some(),
        "the watch dials the SOS number on its modem line"
    );
    rig.shutdown().await.unwrap();
}

async fn sms_reply(dut: &str) -> Option<String> {
    let (loaded, rig, _s, _dir) = connected(dut).await;
    let mark = rig.cellular.log().mark();
    rig.cellular
        .send_sms(&loaded.device.device.numbers.stranger, "pw,123456,ts#")
        .await
        .unwrap();
    let reply = rig
        .cellular
        .log()
        .wait_for(mark, 60.0, |e| matches!(e, CellEvent::SmsFromWatch { .. }))
        .await
        .map(|r| format!("{:?}", r.value));
    rig.shutdown().await.unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_command_is_answered_or_refused_per_profile() {
    assert_eq!(sms_reply("reference").await, None);
    let reply = sms_reply("sms-default-password")
        .await
        .expect("the defective watch answers");
    assert!(reply.contains("pw:123456"), "{reply}");
}

async fn flash_and_boot(dut: &str, image: &str) -> (FlashOutcome, Option<String>) {
    let (loaded, rig, mut strategy, _dir) = lab(dut).await;
    strategy
        .bring_to(&rig, &loaded, DeviceState::Off, true)
        .await
        .unwrap();
    let outcome = rig
        .flasher
        .flash(&fixtures().join("images").join(image))
        .await
        .unwrap();
    let mark = rig.console.log().mark();
    rig.power.set(true).await.unwrap();
    let booted = rig
        .console
        .log()
        .wait_for(mark, 30.0, |l| l.text.contains("booted"))
        .await
        .map(|l| l.value.text);
    rig.shutdown().await.unwrap();
    (outcome, booted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_image_installs_and_a_tampered_one_does_not_per_profile() {
    let (outcome, booted) = flash_and_boot("reference", "reference-2.5.0.img").await;
    assert!(
        matches!(outcome, FlashOutcome::Written { ref version, .. } if version == "2.5.0"),
        "{outcome:?}"
    );
    assert!(booted.is_some_and(|b| b.contains("firmware 2.5.0")));

    let (outcome, booted) = flash_and_boot("reference", "reference-2.5.0-tampered.img").await;
    assert!(
        matches!(outcome, FlashOutcome::Refused { .. }),
        "{outcome:?}"
    );
    assert!(
        !booted.is_some_and(|b| b.contains("2.5.0")),
        "the tampered image must not run"
    );

    let (outcome, booted) =
        flash_and_boot("unsigned-update-accepted", "reference-2.5.0-tampered.img").await;
    assert!(
        matches!(outcome, FlashOutcome::Written { .. }),
        "{outcome:?}"
    );
    assert!(
        booted.is_some_and(|b| b.contains("firmware 2.5.0")),
        "the defective watch runs it"
    );
}

/// With the privilege to do it, the watch runs in a network namespace of its own: its
/// process is in another namespace than the rig, and it still reaches its backend
/// through the gateway (listening inside that namespace). Without it, the evidence
/// says the watch was not isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_is_isolated_in_its_own_network_namespace_when_possible() {
    let (_loaded, rig, _s, dir) = connected("reference").await;
    let said = std::fs::read_to_string(dir.path().join("isolation.txt")).unwrap();
    let ns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let pids = rig.lab().unwrap().pids();
    let inside: Vec<_> = pids
        .iter()
        .filter(|p| ns_of(&p.to_string()) != ns_of("self"))
        .collect();
    if redrig::netns::NetNs::available().is_ok() {
        assert!(said.starts_with("isolated"), "{said}");
        // The watch (one of the two simulators), not the cloud.
        assert_eq!(inside.len(), 1, "{said}");
        assert!(said.contains(&format!(
            "{}",
            ns_of(&inside[0].to_string()).to_string_lossy()
        )));
        assert!(rig
            .gateway
            .notes()
            .iter()
            .any(|n| n.contains("inside the watch's network namespace")));
    } else {
        assert!(said.starts_with("not isolated"), "{said}");
        assert!(inside.is_empty());
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: network isolation of the watch (needs root or CAP_SYS_ADMIN)"
        );
    }
    // Either way the watch reached its backend through the gateway.
    assert!(rig
        .gateway
        .summaries()
        .iter()
        .any(|s| s.frames > 0 || s.tls.is_some()));
    rig.shutdown().await.unwrap();
}
