//! Impairments over real loopback sockets and the real clock: a minimal relay built
//! from the delay line (`redrig::gateway::impair`), the way the gateway places it
//! between reading a chunk and forwarding it.
//!
//! These check the behaviour of the injected delay (median of round trips against
//! the same relay without impairment, within 10 %), a lower bound on a capped
//! transfer (it cannot be faster than the cap), and that loss on a stream loses no
//! byte. No assertion is an upper bound on speed.

use bytes::Bytes;
use redrig::clock::Clock;
use redrig::gateway::impair::{delay_line, Impairment, ImpairmentControl};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_IN_FLIGHT: usize = 1 << 20;

/// An upstream that echoes everything back.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An upstream that reads everything and reports, per connection, the bytes read and
/// when the last one arrived.
async fn sink_server() -> (SocketAddr, tokio::sync::mpsc::Receiver<(u64, Instant)>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                let mut last = Instant::now();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    last = Instant::now();
                }
                let _ = tx.send((total, last)).await;
            });
        }
    });
    (addr, rx)
}

/// One direction: read a chunk, put it on the delay line; take chunks off the line
/// and write them. EOF is passed on once the line has drained.
fn direction<R, W>(mut src: R, mut dst: W, clock: Clock, control: ImpairmentControl, seed: u64)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = delay_line(clock, control, true, MAX_IN_FLIGHT, seed);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if dst.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = dst.shutdown().await;
    });
}

/// A relay to `upstream` with `up` applied watch → server and `down` server → watch.
async fn relay(upstream: SocketAddr, up: ImpairmentControl, down: ImpairmentControl) -> SocketAddr {
    let clock = Clock::start(1.0);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut seed = 1;
        while let Ok((client, _)) = l.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            direction(cr, sw, clock, up.clone(), seed);
            direction(sr, cw, clock, down.clone(), seed + 1);
            seed += 2;
        }
    });
    addr
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Round-trip times of `n` 32-byte messages over one connection to `addr`.
async fn round_trips(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut back = [0u8; 32];
    let mut out = Vec::with_capacity(n);
    // One round trip to settle the connection (not measured).
    for i in 0..=n {
        let msg = [i as u8; 32];
        let t = Instant::now();
        s.write_all(&msg).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
        if i > 0 {
            out.push(t.elapsed());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_matches_the_setting() {
    const L_MS: f64 = 200.0;
    const TRIPS: usize = 20;
    let echo = echo_server().await;

    let plain = relay(echo, ImpairmentControl::new(), ImpairmentControl::new()).await;
    let base = median(round_trips(plain, TRIPS).await);

    let each_way = Impairment {
        latency_ms: L_MS,
        ..Impairment::default()
    };
    let up = ImpairmentControl::with(each_way).unwrap();
    let down = ImpairmentControl::with(each_way).unwrap();
    let impaired = relay(echo, up, down).await;
    let rtts = round_trips(impaired, TRIPS).await;
    let injected = median(rtts.clone()).saturating_sub(base);

    let want = Duration::from_secs_f64(2.0 * L_MS / 1000.0);
    let lo = want.mul_f64(0.9);
    let hi = want.mul_f64(1.1);
    assert!(
        injected >= lo && injected <= hi,
        "median injected latency {injected:?}, expected {want:?} ± 10 % \
         (no-impairment median {base:?}; round trips {rtts:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_transfer_is_no_faster_than_the_cap() {
    const BPS: u64 = 2_000_000;
    const BYTES: usize = 256 * 1024;
    let (sink, mut done) = sink_server().await;
    let up = ImpairmentControl::with(Impairment {
        bandwidth_bps: Some(BPS),
        ..Impairment::default()
    })
    .unwrap();
    let addr = relay(sink, up, ImpairmentControl::new()).await;

    let mut s = TcpStream::connect(addr).await.unwrap();
    let data = vec![0x5au8; BYTES];
    let t0 = Instant::now();
    s.write_all(&data).await.unwrap();
    s.shutdown().await.unwrap();
    let (total, last) = tokio::time::timeout(Duration::from_secs(60), done.recv())
        .await
        .expect("the transfer finished")
        .expect("the sink reported");
    assert_eq!(total, BYTES as u64);
    let took = last - t0;
    // 256 KiB at 2 Mbit/s: 1.05 s at least (a small margin for clock rounding).
    let floor = Duration::from_secs_f64(BYTES as f64 * 8.0 / BPS as f64).mul_f64(0.95);
    assert!(
        took >= floor,
        "{BYTES} bytes in {took:?}, below the cap's {floor:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_on_a_stream_loses_no_byte() {
    const BYTES: usize = 128 * 1024;
    let echo = echo_server().await;
    let lossy = Impairment {
        latency_ms: 5.0,
        jitter_ms: 5.0,
        loss: 0.1,
        ..Impairment::default()
    };
    let addr = relay(
        echo,
        ImpairmentControl::with(lossy).unwrap(),
        ImpairmentControl::with(lossy).unwrap(),
    )
    .await;
    let data: Vec<u8> = (0..BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(BYTES);
    tokio::time::timeout(Duration::from_secs(120), r.read_to_end(&mut back))
        .await
        .expect("the echo finished")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), BYTES);
    assert!(back == data, "the stream came back altered");
}
