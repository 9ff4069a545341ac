//! The media engine over real UDP sockets on 127.0.0.1: a fake caller and callee exchange SDP
//! through the engine, the callee hears the prompt (checked sample by sample), then audio and
//! RTCP flow both ways, strangers are ignored, and release frees every port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::{eventually, WAIT};
use scamguard::media::prompts::FRAME;
use scamguard::media::sdp::Sdp;
use scamguard::media::{rtp, wav, Codec, MediaConfig, MediaEngine, MediaError, Release, Side};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

/// A prompts folder with short prompts of known content (a real spoken prompt lasts ~10 s; the
/// checks are the same, only slower).
fn prompt_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scamguard-media-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tone = |hz: f64, n: usize| -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f64 * hz * std::f64::consts::TAU / 8000.0).sin() * 12000.0) as i16)
            .collect()
    };
    // 4850 samples: 30 full frames and a partial one, padded by the loader.
    std::fs::write(dir.join("en.wav"), wav::encode_pcm16(&tone(440.0, 4850))).unwrap();
    std::fs::write(dir.join("de.wav"), wav::encode_pcm16(&tone(660.0, 4000))).unwrap();
    std::fs::write(
        dir.join("en-tech-support.wav"),
        wav::encode_pcm16(&tone(880.0, 3200)),
    )
    .unwrap();
    dir
}

fn config(tag: &str, port_min: u16) -> MediaConfig {
    MediaConfig {
        enabled: true,
        bind_ip: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max: port_min + 99,
        max_sessions: 20,
        prompts_dir: prompt_dir(tag).to_string_lossy().into_owned(),
        prompts: [("1", "en"), ("44", "en"), ("49", "de")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..MediaConfig::default()
    }
}

fn sdp(port: u16, rtcp: u16, fmts: &str, extra: &str) -> Vec<u8> {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {fmts}\r\na=rtcp:{rtcp}\r\n"
    );
    if fmts.contains("101") {
        s.push_str("a=rtpmap:101 telephone-event/8000\r\n");
    }
    s.push_str(extra);
    s.into_bytes()
}

struct Party {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Party {
    async fn new() -> Party {
        Party {
            rtp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            rtcp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }
    fn ports(&self) -> (u16, u16) {
        (
            self.rtp.local_addr().unwrap().port(),
            self.rtcp.local_addr().unwrap().port(),
        )
    }
}

async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut b = [0u8; 2048];
    let (n, from) = timeout(WAIT, s.recv_from(&mut b))
        .await
        .expect("packet did not arrive")
        .unwrap();
    (b[..n].to_vec(), from)
}

fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = rtp::header(pt, false, seq, ts, ssrc).to_vec();
    p.extend_from_slice(&[fill; FRAME]);
    p
}

/// Port and address the rewritten SDP points at.
fn target(body: &[u8]) -> (SocketAddr, u16) {
    let s = Sdp::parse(body).unwrap();
    (
        s.audio.rtp_addr().unwrap(),
        s.audio.rtcp_addr().unwrap().port(),
    )
}

/// `callee` picks the prompt; with `shipped` the real spoken prompts in `prompts/` are used.
async fn announced_call(
    codec: Codec,
    offer_fmts: &str,
    answer_fmts: &str,
    port_min: u16,
    shipped: Option<&str>,
) {
    let tag = format!("relay-{port_min}");
    let mut cfg = config(&tag, port_min);
    let (callee_no, prompt_name) = match shipped {
        None => ("+4930123456", "de"),
        Some(name) => {
            cfg.prompts_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts").into();
            cfg.prompts = MediaConfig::default().prompts;
            ("+12025550123", name)
        }
    };
    let engine = MediaEngine::new(cfg).unwrap();
    let (caller, callee, stranger) = (Party::new().await, Party::new().await, Party::new().await);
    let cid = "call-1@test";

    let (cp, cr) = caller.ports();
    let offer = engine
        .offer(cid, Side::Caller, &sdp(cp, cr, offer_fmts, ""))
        .unwrap();
    let (leg_b, leg_b_rtcp) = target(&offer);
    let (ep, er) = callee.ports();
    let answer = engine
        .answer(cid, Side::Callee, &sdp(ep, er, answer_fmts, ""))
        .unwrap();
    let (leg_a, leg_a_rtcp) = target(&answer);
    assert_eq!(engine.ports(cid), Some((leg_a.port(), leg_b.port())));
    assert_eq!(
        (leg_a_rtcp, leg_b_rtcp),
        (leg_a.port() + 1, leg_b.port() + 1)
    );
    assert_eq!(engine.sessions(), 1);
    assert_eq!(engine.ports_in_use(), 4);

    // The caller talks before and during the prompt: the callee must hear none of it.
    for i in 0..3u16 {
        caller
            .rtp
            .send_to(
                &pkt(codec.static_pt(), 100 + i, 1000, 0xCA11E4, 0x11),
                leg_a,
            )
            .await
            .unwrap();
    }
    // The callee's early media reaches the caller untouched (relay works before answer).
    let early = pkt(codec.static_pt(), 7, 7, 0xCA11EE, 0x33);
    callee.rtp.send_to(&early, leg_b).await.unwrap();
    let (got, from) = recv(&caller.rtp).await;
    assert_eq!((got, from), (early, leg_a));
    // Caller packets before answer are relayed too: drain those three.
    for i in 0..3u16 {
        let (got, _) = recv(&callee.rtp).await;
        assert_eq!(rtp::seq(&got), 100 + i);
    }

    // Pacing is judged from before the prompt can start, so a stall on a loaded machine (which
    // only delays frames) can never fail it; only frames sent ahead of their schedule can.
    let before_connect = Instant::now();
    engine.connected(cid, callee_no, None).unwrap();
    let prompt = engine.prompts().select(callee_no, None);
    assert_eq!(prompt.name, prompt_name);
    let frames = prompt.frames(codec);
    let start = Instant::now();
    for i in 0..3u16 {
        caller
            .rtp
            .send_to(
                &pkt(codec.static_pt(), 103 + i, 1480, 0xCA11E4, 0x11),
                leg_a,
            )
            .await
            .unwrap();
    }

    let mut arrivals = Vec::new();
    let mut first: Option<Vec<u8>> = None;
    for (i, want) in frames.iter().enumerate() {
        let (p, from) = recv(&callee.rtp).await;
        arrivals.push(Instant::now());
        assert_eq!(
            from, leg_b,
            "prompt comes from the port the callee was given"
        );
        assert_eq!(p.len(), rtp::HEADER + FRAME);
        assert_eq!(rtp::payload_type(&p), codec.static_pt());
        assert_eq!(
            rtp::marker(&p),
            i == 0,
            "marker only on the first packet ({i})"
        );
        let got: Vec<i16> = rtp::payload(&p).iter().map(|&c| codec.decode(c)).collect();
        let exp: Vec<i16> = want.iter().map(|&c| codec.decode(c)).collect();
        assert_eq!(got, exp, "frame {i} differs");
        // and the pre-encoded frames are the prompt's samples, as close as G.711 allows
        for (g, s) in got.iter().zip(&prompt.samples[i * FRAME..]) {
            assert_eq!(*g, codec.decode(codec.encode(*s)));
        }
        if let Some(f) = &first {
            assert_eq!(rtp::ssrc(&p), rtp::ssrc(f));
            assert_eq!(rtp::seq(&p), rtp::seq(f).wrapping_add(i as u16));
            assert_eq!(
                rtp::timestamp(&p),
                rtp::timestamp(f).wrapping_add(160 * i as u32)
            );
        } else {
            first = Some(p);
        }
    }
    let first = first.unwrap();
    let took = arrivals.last().unwrap().duration_since(arrivals[0]);
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let max = gaps.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "{codec:?}: {} frames in {:?} (from connected: {:?}); inter-arrival mean {mean:.2} ms, max {max:.2} ms",
        frames.len(),
        took,
        start.elapsed()
    );
    // Faster than real time would overflow the callee's jitter buffer: a real defect. Frame i
    // is due 20 ms x i after the prompt starts, which is after `before_connect`.
    let floor = Duration::from_millis(20 * (frames.len() as u64 - 1));
    let since_connect = arrivals.last().unwrap().duration_since(before_connect);
    assert!(
        since_connect >= floor,
        "the last prompt frame came {since_connect:?} after connect, ahead of its schedule {floor:?}"
    );

    // After the prompt the caller is heard, restamped into the prompt's stream.
    let last_seq = rtp::seq(&first).wrapping_add(frames.len() as u16 - 1);
    let last_ts = rtp::timestamp(&first).wrapping_add(160 * (frames.len() as u32 - 1));
    for i in 0..3u16 {
        caller
            .rtp
            .send_to(
                &pkt(
                    codec.static_pt(),
                    200 + i,
                    5000 + 160 * i as u32,
                    0xCA11E4,
                    0x22,
                ),
                leg_a,
            )
            .await
            .unwrap();
    }
    let mut prev_ts = last_ts;
    for i in 0..3u16 {
        let (p, _) = recv(&callee.rtp).await;
        assert_eq!(
            rtp::payload(&p),
            &[0x22; FRAME],
            "held caller audio leaked out"
        );
        assert_eq!(rtp::ssrc(&p), rtp::ssrc(&first));
        assert_eq!(rtp::seq(&p), last_seq.wrapping_add(1 + i));
        assert_eq!(rtp::marker(&p), i == 0);
        let ts = rtp::timestamp(&p);
        let step = ts.wrapping_sub(prev_ts);
        assert!((160..8000 * 10).contains(&step), "timestamp step {step}");
        if i > 0 {
            assert_eq!(step, 160, "caller's own spacing kept");
        }
        prev_ts = ts;
    }

    // Callee audio reaches the caller unchanged, from leg A.
    let hello = pkt(codec.static_pt(), 9, 9, 0xCA11EE, 0x44);
    callee.rtp.send_to(&hello, leg_b).await.unwrap();
    assert_eq!(recv(&caller.rtp).await, (hello, leg_a));

    // A stranger's packet to either leg goes nowhere; the next real packet is the one relayed.
    let dropped = engine.stats().dropped_unrelated.get();
    stranger
        .rtp
        .send_to(&pkt(codec.static_pt(), 1, 1, 0xBAD, 0x66), leg_a)
        .await
        .unwrap();
    stranger
        .rtp
        .send_to(&pkt(codec.static_pt(), 1, 1, 0xBAD, 0x66), leg_b)
        .await
        .unwrap();
    caller
        .rtp
        .send_to(&pkt(codec.static_pt(), 203, 5480, 0xCA11E4, 0x55), leg_a)
        .await
        .unwrap();
    callee
        .rtp
        .send_to(&pkt(codec.static_pt(), 10, 10, 0xCA11EE, 0x77), leg_b)
        .await
        .unwrap();
    assert_eq!(rtp::payload(&recv(&callee.rtp).await.0), &[0x55; FRAME]);
    assert_eq!(rtp::payload(&recv(&caller.rtp).await.0), &[0x77; FRAME]);
    assert_eq!(engine.stats().dropped_unrelated.get(), dropped + 2);

    // RTCP both ways, to the a=rtcp ports, from the legs' RTCP ports.
    let sr = b"\x80\xc8\x00\x06\x00\xca\x11\xe4abcdefghijklmnopqrst".to_vec();
    caller
        .rtcp
        .send_to(&sr, (leg_a.ip(), leg_a_rtcp))
        .await
        .unwrap();
    assert_eq!(
        recv(&callee.rtcp).await,
        (sr.clone(), SocketAddr::new(leg_b.ip(), leg_b_rtcp))
    );
    callee
        .rtcp
        .send_to(&sr, (leg_b.ip(), leg_b_rtcp))
        .await
        .unwrap();
    assert_eq!(
        recv(&caller.rtcp).await,
        (sr, SocketAddr::new(leg_a.ip(), leg_a_rtcp))
    );

    let stats = engine.stats();
    assert_eq!(stats.prompts_played.get(), 1);
    assert!(stats.dropped_held.get() >= 3);

    // Release frees everything: the four ports can be bound again.
    engine.release(cid, Release::Bye).unwrap().wait().await;
    assert_eq!(engine.sessions(), 0);
    assert_eq!(engine.ports_in_use(), 0);
    for port in [leg_a.port(), leg_a_rtcp, leg_b.port(), leg_b_rtcp] {
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} still held: {e}"));
    }
    assert!(engine.release(cid, Release::Bye).is_none());
    assert_eq!(
        engine.answer(cid, Side::Callee, &sdp(ep, er, answer_fmts, "")),
        Err(MediaError::UnknownCall)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_call_pcma() {
    announced_call(Codec::Pcma, "0 8 101", "8 101", 21000, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_call_pcmu() {
    announced_call(Codec::Pcmu, "18 0 8 101", "0 101", 21100, None).await;
}

/// The shipped English prompt (about 10 s), end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_call_shipped_english_prompt() {
    announced_call(Codec::Pcmu, "0 101", "0 101", 21600, Some("en")).await;
}

#[tokio::test]
async fn no_g711_offer_is_refused_without_allocating() {
    let engine = MediaEngine::new(config("nog711", 21200)).unwrap();
    let r = engine.offer("x", Side::Caller, &sdp(4000, 4001, "18 9 101", ""));
    assert_eq!(r, Err(MediaError::NoG711));
    assert_eq!(
        MediaError::NoG711.to_string(),
        "neither PCMU nor PCMA negotiated; announcement needs G.711"
    );
    assert_eq!((engine.sessions(), engine.ports_in_use()), (0, 0));
    // SRTP cannot be announced into (and restamping would break its authentication).
    let srtp = String::from_utf8(sdp(4000, 4001, "0 8", ""))
        .unwrap()
        .replace("RTP/AVP", "RTP/SAVP");
    assert_eq!(
        engine.offer("z", Side::Caller, srtp.as_bytes()),
        Err(MediaError::NotPlainRtp("RTP/SAVP".into()))
    );
    assert_eq!((engine.sessions(), engine.ports_in_use()), (0, 0));
    // Bad SDP is an error value too.
    let r = engine.offer("y", Side::Caller, b"v=0\r\nm=audio x RTP/AVP 0\r\n");
    assert!(matches!(r, Err(MediaError::Sdp(_))), "{r:?}");
}

#[tokio::test]
async fn answer_without_g711_relays_but_skips_the_prompt() {
    let engine = MediaEngine::new(config("skip", 21300)).unwrap();
    let (caller, callee) = (Party::new().await, Party::new().await);
    let (cp, cr) = caller.ports();
    let (ep, er) = callee.ports();
    let offer = engine
        .offer("c", Side::Caller, &sdp(cp, cr, "18 0", ""))
        .unwrap();
    let answer = engine
        .answer("c", Side::Callee, &sdp(ep, er, "18", ""))
        .unwrap();
    assert_eq!(engine.connected("c", "1", None), Err(MediaError::NoG711));
    assert_eq!(engine.stats().prompts_skipped.get(), 1);
    let (leg_a, leg_b) = (target(&answer).0, target(&offer).0);
    let p = pkt(18, 1, 1, 5, 0x10);
    caller.rtp.send_to(&p, leg_a).await.unwrap();
    assert_eq!(recv(&callee.rtp).await, (p.clone(), leg_b));
    callee.rtp.send_to(&p, leg_b).await.unwrap();
    assert_eq!(recv(&caller.rtp).await, (p, leg_a));
    engine.shutdown().await;
    assert_eq!((engine.sessions(), engine.ports_in_use()), (0, 0));
}

/// Re-INVITEs in either direction keep the ports, and a party that moves (new SDP address) is
/// followed once media comes from the new address.
#[tokio::test]
async fn reinvite_keeps_ports_and_follows_a_move() {
    let engine = MediaEngine::new(config("reinvite", 21400)).unwrap();
    let (caller, callee, moved) = (Party::new().await, Party::new().await, Party::new().await);
    let (cp, cr) = caller.ports();
    let (ep, er) = callee.ports();
    let o1 = engine
        .offer("r", Side::Caller, &sdp(cp, cr, "8", ""))
        .unwrap();
    let a1 = engine
        .answer("r", Side::Callee, &sdp(ep, er, "8", ""))
        .unwrap();
    let (leg_a, leg_b) = (target(&a1).0, target(&o1).0);
    // (no connected(): the prompt would hold the caller; the playing path is tested above)
    assert_eq!(
        engine.prompts().select("44", Some("tech-support")).name,
        "en-tech-support"
    );
    assert_eq!(engine.prompts().select("999", Some("nope")).name, "en");
    assert!(engine.prompts().has_category("tech-support"));
    assert!(!engine.prompts().has_category("nope"));
    caller
        .rtp
        .send_to(&pkt(8, 1, 1, 1, 1), leg_a)
        .await
        .unwrap();

    // Callee puts the call on hold, caller answers; ports unchanged.
    let hold = engine
        .offer("r", Side::Callee, &sdp(ep, er, "8", "a=sendonly\r\n"))
        .unwrap();
    assert_eq!(target(&hold).0, leg_a);
    assert!(String::from_utf8_lossy(&hold).contains("a=sendonly\r\n"));
    let (mp, mr) = moved.ports();
    let resumed = engine
        .answer("r", Side::Caller, &sdp(mp, mr, "8", "a=recvonly\r\n"))
        .unwrap();
    assert_eq!(target(&resumed).0, leg_b);

    // The caller now sends from its new address: accepted (it is the SDP address) and the
    // callee's audio follows it there.
    let p = pkt(8, 2, 2, 2, 0x42);
    moved.rtp.send_to(&p, leg_a).await.unwrap();
    // skip the first packet until the moved caller's packet shows up
    loop {
        let (got, _) = recv(&callee.rtp).await;
        if rtp::payload(&got) == [0x42; FRAME] {
            break;
        }
    }
    let q = pkt(8, 3, 3, 3, 0x43);
    callee.rtp.send_to(&q, leg_b).await.unwrap();
    assert_eq!(recv(&moved.rtp).await.0, q);
    // The old address is now a stranger.
    let before = engine.stats().dropped_unrelated.get();
    caller
        .rtp
        .send_to(&pkt(8, 4, 4, 4, 0x44), leg_a)
        .await
        .unwrap();
    moved
        .rtp
        .send_to(&pkt(8, 5, 5, 2, 0x45), leg_a)
        .await
        .unwrap();
    loop {
        let (got, _) = recv(&callee.rtp).await;
        let body = rtp::payload(&got);
        assert_ne!(body, [0x44; FRAME], "old address still relayed");
        if body == [0x45; FRAME] {
            break;
        }
    }
    assert_eq!(engine.stats().dropped_unrelated.get(), before + 1);
    engine.release("r", Release::Bye).unwrap().wait().await;
}

/// With the caller not held, its audio is mixed into the prompt instead of dropped.
#[tokio::test]
async fn caller_mixed_into_prompt_when_not_held() {
    let mut cfg = config("mix", 21500);
    cfg.hold_caller_during_prompt = false;
    let engine = MediaEngine::new(cfg).unwrap();
    let (caller, callee) = (Party::new().await, Party::new().await);
    let (cp, cr) = caller.ports();
    let (ep, er) = callee.ports();
    let o = engine
        .offer("m", Side::Caller, &sdp(cp, cr, "0", ""))
        .unwrap();
    let a = engine
        .answer("m", Side::Callee, &sdp(ep, er, "0", ""))
        .unwrap();
    let leg_a = target(&a).0;
    let _ = target(&o);
    engine.connected("m", "1", None).unwrap();
    let frames = engine
        .prompts()
        .select("1", None)
        .frames(Codec::Pcmu)
        .to_vec();
    // A loud constant caller frame: every frame it lands in differs from the plain prompt.
    let loud = Codec::Pcmu.encode(8000);
    let mut sent = false;
    let mut mixed = 0;
    for f in &frames {
        let (p, _) = recv(&callee.rtp).await;
        if !sent {
            let mut c = rtp::header(0, false, 1, 1, 1).to_vec();
            c.extend_from_slice(&[loud; FRAME]);
            caller.rtp.send_to(&c, leg_a).await.unwrap();
            sent = true;
        }
        if rtp::payload(&p) != f.as_slice() {
            let s = Codec::Pcmu.decode(rtp::payload(&p)[0]) as i32;
            let want = (Codec::Pcmu.decode(f[0]) as i32 + Codec::Pcmu.decode(loud) as i32)
                .min(i16::MAX as i32);
            assert_eq!(
                Codec::Pcmu.decode(Codec::Pcmu.encode(want as i16)) as i32,
                s
            );
            mixed += 1;
        }
    }
    assert_eq!(
        mixed, 1,
        "the caller frame is mixed into exactly one prompt frame"
    );
    engine.release("m", Release::Bye).unwrap().wait().await;
}

/// A stranger flooding the caller-facing port is dropped, cannot starve the other leg, and does
/// not keep an abandoned session alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_stranger_starves_nothing_and_keeps_nothing_alive() {
    let mut cfg = config("flood", 21700);
    cfg.setup_timeout_secs = 1;
    let engine = MediaEngine::new(cfg).unwrap();
    let (caller, callee) = (Party::new().await, Party::new().await);
    let (cp, cr) = caller.ports();
    let (ep, er) = callee.ports();
    let o = engine
        .offer("f", Side::Caller, &sdp(cp, cr, "0", ""))
        .unwrap();
    let a = engine
        .answer("f", Side::Callee, &sdp(ep, er, "0", ""))
        .unwrap();
    let (leg_a, leg_b) = (target(&a).0, target(&o).0);
    // both parties latch
    caller
        .rtp
        .send_to(&pkt(0, 1, 1, 1, 1), leg_a)
        .await
        .unwrap();
    recv(&callee.rtp).await;
    callee
        .rtp
        .send_to(&pkt(0, 1, 1, 2, 2), leg_b)
        .await
        .unwrap();
    recv(&caller.rtp).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = pkt(0, 9, 9, 9, 0x99);
            let mut sent = 0u64;
            // ~20k packets/s for at most 4 s, far more than one call's 50/s (the pause paces
            // the flood; it is the scenario, not a synchronisation)
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 80_000 {
                for _ in 0..20 {
                    let _ = s.send_to(&p, leg_a);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    eventually("the flood reaches the engine", || async {
        engine.stats().dropped_unrelated.get() > 0
    })
    .await;
    // The callee is still heard while the flood goes on.
    let hello = pkt(0, 2, 2, 2, 0x21);
    callee.rtp.send_to(&hello, leg_b).await.unwrap();
    assert_eq!(recv(&caller.rtp).await.0, hello);
    // Nobody real speaks any more: the session must end despite the flood.
    eventually("the flooded session ends", || async {
        engine.sessions() == 0
    })
    .await;
    let still_flooding = !flood.is_finished();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(engine.sessions(), 0, "flood kept the session alive");
    assert!(
        still_flooding,
        "flood ended before the session did; test proves nothing"
    );
    let dropped = engine.stats().dropped_unrelated.get();
    eprintln!("flood: {sent} packets sent, {dropped} dropped as unrelated");
    assert!(dropped > 0);
    assert_eq!(engine.stats().released_idle.get(), 1);
}

/// A callee behind NAT advertises an address it cannot be reached at; its first RTP packet
/// after answer starts the prompt and tells the engine where to send it.
#[tokio::test]
async fn prompt_follows_a_natted_callee() {
    let engine = MediaEngine::new(config("nat", 21800)).unwrap();
    let (caller, callee, private) = (Party::new().await, Party::new().await, Party::new().await);
    let (cp, cr) = caller.ports();
    // the SDP names `private` (the address inside the NAT); media really comes from `callee`
    let (pp, pr) = private.ports();
    let o = engine
        .offer("n", Side::Caller, &sdp(cp, cr, "8", ""))
        .unwrap();
    engine
        .answer("n", Side::Callee, &sdp(pp, pr, "8", ""))
        .unwrap();
    let leg_b = target(&o).0;
    engine.connected("n", "1", None).unwrap();
    callee
        .rtp
        .send_to(&pkt(8, 1, 1, 7, 0), leg_b)
        .await
        .unwrap();
    let frames = engine.prompts().select("1", None).frames(Codec::Pcma).len();
    for i in 0..frames {
        let (p, from) = recv(&callee.rtp).await;
        assert_eq!(from, leg_b);
        assert_eq!(rtp::marker(&p), i == 0, "frame {i}");
    }
    let mut b = [0u8; 64];
    assert!(
        private.rtp.try_recv_from(&mut b).is_err(),
        "nothing went to the unreachable SDP address"
    );
    engine.release("n", Release::Bye).unwrap().wait().await;
}
