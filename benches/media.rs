//! Load harness for the media engine (`cargo bench --bench media`): how many concurrent
//! announced-and-relayed calls the engine sustains before it adds more than 5 ms of delay, and
//! how much CPU one relayed call costs.
//!
//! Loopback only, bounded in time (< 2 min). The engine runs in its own tokio runtime whose
//! threads are named `media-engine`, so its CPU is read per thread from `/proc/self/task/*/stat`
//! apart from the fake callers and callees (runtime `harness`). Each step of N calls:
//! SDP offer/answer, answer with a 2 s prompt (prompt pacing measured at the callee), then both
//! parties send 20 ms packets that carry their send time; the relay delay is arrival minus send
//! time. The same endpoints then talk directly (no engine) for a baseline, and the added delay
//! is relay minus direct, at p50/p99. Figures are printed, not asserted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scamguard::media::sdp::Sdp;
use scamguard::media::{rtp, wav, MediaConfig, MediaEngine, Release, Side};
use tokio::net::UdpSocket;

const MAGIC: &[u8; 8] = b"SGBENCH!";
const PROMPT_SECS: f64 = 2.0;
const MEASURE: Duration = Duration::from_secs(4);
const BASELINE: Duration = Duration::from_secs(3);
const BUDGET: Duration = Duration::from_secs(105);
const STEPS: &[usize] = &[25, 50, 100, 200, 300, 400, 600, 800];

/// Delay histogram in 50 µs buckets up to 200 ms.
struct Hist {
    b: Vec<AtomicU64>,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            b: (0..4001).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    fn add(&self, d: Duration) {
        let i = ((d.as_micros() / 50) as usize).min(self.b.len() - 1);
        self.b[i].fetch_add(1, Ordering::Relaxed);
    }
    fn reset(&self) {
        for x in &self.b {
            x.store(0, Ordering::Relaxed);
        }
    }
    fn count(&self) -> u64 {
        self.b.iter().map(|x| x.load(Ordering::Relaxed)).sum()
    }
    /// Percentile in ms.
    fn pct(&self, p: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return f64::NAN;
        }
        let want = ((n as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, x) in self.b.iter().enumerate() {
            seen += x.load(Ordering::Relaxed);
            if seen >= want {
                return (i as f64 + 1.0) * 0.05;
            }
        }
        f64::INFINITY
    }
}

struct Shared {
    epoch: Instant,
    delay: Hist,
    prompt_gap: Hist,
    /// |inter-arrival - 20 ms| of the parties' own streams: on the direct path this is the
    /// machine's own timer and scheduling jitter, the floor the prompt's jitter is compared to.
    stream_gap: Hist,
    prompt_pkts: AtomicU64,
    /// Packets the parties actually sent (a starved sender skips ticks; that is not loss).
    sent: AtomicU64,
    stop: AtomicBool,
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let mut ticks = 0u64;
    if let Ok(d) = std::fs::read_dir("/proc/self/task") {
        for t in d.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // fields after the ")" of the command name: state is field 3; utime/stime 14/15
            if let Some(rest) = stat.rsplit(')').next() {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() > 12 {
                    ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn sdp(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    .into_bytes()
}

struct Call {
    id: String,
    caller: Arc<UdpSocket>,
    callee: Arc<UdpSocket>,
    leg_a: SocketAddr,
    leg_b: SocketAddr,
}

/// Receive loop of one endpoint: delays of our own packets; prompt inter-arrival gaps.
async fn receiver(sock: Arc<UdpSocket>, sh: Arc<Shared>) {
    let mut buf = [0u8; 2048];
    let mut last_prompt: Option<Instant> = None;
    let mut last_stream: Option<Instant> = None;
    while !sh.stop.load(Ordering::Relaxed) {
        let r = tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = r else { continue };
        let now = Instant::now();
        let p = &buf[..n];
        let body = rtp::payload(p);
        if body.len() >= 16 && &body[..8] == MAGIC {
            let sent = u64::from_be_bytes(body[8..16].try_into().unwrap_or([0; 8]));
            let at = now.duration_since(sh.epoch).as_nanos() as u64;
            sh.delay.add(Duration::from_nanos(at.saturating_sub(sent)));
            if let Some(l) = last_stream {
                let gap = now.duration_since(l).as_secs_f64() * 1000.0;
                sh.stream_gap
                    .add(Duration::from_secs_f64((gap - 20.0).abs() / 1000.0));
            }
            last_stream = Some(now);
        } else if rtp::is_rtp_like(p) {
            sh.prompt_pkts.fetch_add(1, Ordering::Relaxed);
            if let Some(l) = last_prompt {
                let gap = now.duration_since(l).as_secs_f64() * 1000.0;
                sh.prompt_gap
                    .add(Duration::from_secs_f64((gap - 20.0).abs() / 1000.0));
            }
            last_prompt = Some(now);
        }
    }
}

/// (caller socket, where it sends, callee socket, where it sends)
type Flows = Arc<Vec<(Arc<UdpSocket>, SocketAddr, Arc<UdpSocket>, SocketAddr)>>;

/// Every 20 ms each party sends one packet carrying its send time.
async fn sender(calls: Flows, sh: Arc<Shared>) -> u64 {
    let mut iv = tokio::time::interval(Duration::from_millis(20));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq: u16 = 0;
    let mut sent = 0u64;
    let mut pkt = [0u8; rtp::HEADER + 160];
    while !sh.stop.load(Ordering::Relaxed) {
        iv.tick().await;
        seq = seq.wrapping_add(1);
        for (a, a_to, b, b_to) in calls.iter() {
            for (s, to) in [(a, a_to), (b, b_to)] {
                pkt[..rtp::HEADER].copy_from_slice(&rtp::header(
                    0,
                    false,
                    seq,
                    seq as u32 * 160,
                    0x5EED,
                ));
                pkt[rtp::HEADER..rtp::HEADER + 8].copy_from_slice(MAGIC);
                let t = sh.epoch.elapsed().as_nanos() as u64;
                pkt[rtp::HEADER + 8..rtp::HEADER + 16].copy_from_slice(&t.to_be_bytes());
                if s.try_send_to(&pkt, *to).is_ok() {
                    sent += 1;
                    sh.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    sent
}

struct Row {
    n: usize,
    prompt_p99: f64,
    prompt_max: f64,
    floor_p99: f64,
    relay_p50: f64,
    relay_p99: f64,
    direct_p50: f64,
    direct_p99: f64,
    loss: f64,
    cpu_per_call_pct: f64,
    us_per_packet: f64,
}

fn run_step(
    n: usize,
    engine: &MediaEngine,
    engine_rt: &tokio::runtime::Runtime,
    harness: &tokio::runtime::Runtime,
) -> Row {
    let sh = Arc::new(Shared {
        epoch: Instant::now(),
        delay: Hist::new(),
        prompt_gap: Hist::new(),
        stream_gap: Hist::new(),
        prompt_pkts: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    // Endpoints and SDP exchange.
    let calls: Vec<Call> = harness.block_on(async {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let caller = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let callee = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            v.push(Call {
                id: format!("bench-{n}-{i}"),
                caller,
                callee,
                leg_a: "127.0.0.1:9".parse().unwrap(),
                leg_b: "127.0.0.1:9".parse().unwrap(),
            });
        }
        v
    });
    let mut calls = calls;
    let receivers: Vec<_> = calls
        .iter()
        .flat_map(|c| [c.caller.clone(), c.callee.clone()])
        .map(|s| harness.spawn(receiver(s, sh.clone())))
        .collect();
    {
        let _g = engine_rt.enter();
        for c in calls.iter_mut() {
            let o = engine
                .offer(
                    &c.id,
                    Side::Caller,
                    &sdp(c.caller.local_addr().unwrap().port()),
                )
                .unwrap();
            let a = engine
                .answer(
                    &c.id,
                    Side::Callee,
                    &sdp(c.callee.local_addr().unwrap().port()),
                )
                .unwrap();
            c.leg_b = Sdp::parse(&o).unwrap().audio.rtp_addr().unwrap();
            c.leg_a = Sdp::parse(&a).unwrap().audio.rtp_addr().unwrap();
        }
    }
    let pairs: Arc<Vec<_>> = Arc::new(
        calls
            .iter()
            .map(|c| (c.caller.clone(), c.leg_a, c.callee.clone(), c.leg_b))
            .collect(),
    );
    let send = harness.spawn(sender(pairs, sh.clone()));
    for c in &calls {
        engine.connected(&c.id, "1", None).unwrap();
    }
    std::thread::sleep(Duration::from_secs_f64(PROMPT_SECS + 0.5));
    let prompt_p99 = sh.prompt_gap.pct(0.99);
    let prompt_max = sh.prompt_gap.pct(1.0);

    // Relay measurement window.
    sh.delay.reset();
    sh.sent.store(0, Ordering::Relaxed);
    let stats = engine.stats();
    let (cpu0, pk0) = (thread_cpu("media-engine"), stats.rtp_relayed.get());
    let t0 = Instant::now();
    std::thread::sleep(MEASURE);
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, pk1) = (thread_cpu("media-engine"), stats.rtp_relayed.get());
    let received = sh.delay.count() as f64;
    let expected = sh.sent.load(Ordering::Relaxed).max(1) as f64;
    let relay_p50 = sh.delay.pct(0.50);
    let relay_p99 = sh.delay.pct(0.99);
    sh.stop.store(true, Ordering::Relaxed);
    harness.block_on(async {
        let _ = send.await;
        for r in receivers {
            let _ = r.await;
        }
    });
    let closing: Vec<_> = calls
        .iter()
        .filter_map(|c| engine.release(&c.id, Release::Bye))
        .collect();
    engine_rt.block_on(async {
        for c in closing {
            c.wait().await;
        }
    });

    // Baseline: the same endpoints, talking directly.
    let sh2 = Arc::new(Shared {
        epoch: Instant::now(),
        delay: Hist::new(),
        prompt_gap: Hist::new(),
        stream_gap: Hist::new(),
        prompt_pkts: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let receivers: Vec<_> = calls
        .iter()
        .flat_map(|c| [c.caller.clone(), c.callee.clone()])
        .map(|s| harness.spawn(receiver(s, sh2.clone())))
        .collect();
    let direct: Arc<Vec<_>> = Arc::new(
        calls
            .iter()
            .map(|c| {
                (
                    c.caller.clone(),
                    c.callee.local_addr().unwrap(),
                    c.callee.clone(),
                    c.caller.local_addr().unwrap(),
                )
            })
            .collect(),
    );
    let send = harness.spawn(sender(direct, sh2.clone()));
    std::thread::sleep(Duration::from_millis(300));
    sh2.delay.reset();
    sh2.stream_gap.reset();
    std::thread::sleep(BASELINE);
    sh2.stop.store(true, Ordering::Relaxed);
    harness.block_on(async {
        let _ = send.await;
        for r in receivers {
            let _ = r.await;
        }
    });
    let cpu = cpu1 - cpu0;
    Row {
        n,
        prompt_p99,
        prompt_max,
        floor_p99: sh2.stream_gap.pct(0.99),
        relay_p50,
        relay_p99,
        direct_p50: sh2.delay.pct(0.50),
        direct_p99: sh2.delay.pct(0.99),
        loss: (1.0 - received / expected).max(0.0),
        cpu_per_call_pct: cpu / secs / n as f64 * 100.0,
        us_per_packet: cpu * 1e6 / (pk1 - pk0).max(1) as f64,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and should stay quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("scamguard-media-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let samples: Vec<i16> = (0..(8000.0 * PROMPT_SECS) as usize)
        .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
        .collect();
    std::fs::write(dir.join("en.wav"), wav::encode_pcm16(&samples)).unwrap();
    let engine_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("media-engine")
        .enable_all()
        .build()
        .unwrap();
    let harness = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("harness")
        .enable_all()
        .build()
        .unwrap();
    let engine = MediaEngine::new(MediaConfig {
        enabled: true,
        bind_ip: "127.0.0.1".parse().unwrap(),
        port_min: 26000,
        port_max: 29999,
        max_sessions: 1000,
        prompts_dir: dir.to_string_lossy().into_owned(),
        prompts: Default::default(),
        ..MediaConfig::default()
    })
    .unwrap();

    println!("media engine load: N announced calls, each party sending 20 ms RTP (2 x 50 pkt/s per call)");
    println!(
        "delays in ms (50 us buckets); prompt jitter = |inter-arrival - 20 ms| at the callee;"
    );
    println!(
        "floor = the same jitter of the parties' own 20 ms streams sent directly (machine noise)"
    );
    println!(
        "{:>5} {:>11} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>11} {:>9}",
        "calls",
        "prompt p99",
        "prompt max",
        "floor p99",
        "relay p50",
        "relay p99",
        "direct p50",
        "direct p99",
        "added p99",
        "loss %",
        "CPU %/call",
        "us/pkt"
    );
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut best: Option<Row> = None;
    let steps: &[usize] = if quick { &STEPS[..1] } else { STEPS };
    for &n in steps {
        if started.elapsed() + Duration::from_secs(12) > BUDGET {
            println!("(time budget reached)");
            break;
        }
        let r = run_step(n, &engine, &engine_rt, &harness);
        let added = r.relay_p99 - r.direct_p99;
        println!(
            "{:>5} {:>11.2} {:>11.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10.2} {:>9.2} {:>7.2} {:>11.3} {:>9.2}",
            r.n, r.prompt_p99, r.prompt_max, r.floor_p99, r.relay_p50, r.relay_p99, r.direct_p50,
            r.direct_p99, added, r.loss * 100.0, r.cpu_per_call_pct, r.us_per_packet
        );
        // Added by the engine: relay delay over the direct path, prompt jitter over the floor.
        // Every step runs (within the time budget) so the table shows the trend on a noisy
        // machine; only heavy loss stops the ramp.
        if added <= 5.0 && r.prompt_p99 - r.floor_p99 <= 5.0 && r.loss < 0.01 {
            best = Some(r);
        } else if r.loss > 0.05 {
            break;
        }
    }
    match best {
        Some(r) => println!(
            "sustained: {} concurrent announced+relayed calls with added p99 delay <= 5 ms \
             (CPU {:.3} % of one core per call, {:.2} us per relayed packet); total {:?}",
            r.n,
            r.cpu_per_call_pct,
            r.us_per_packet,
            started.elapsed()
        ),
        None => println!("no step met the 5 ms bound; total {:?}", started.elapsed()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
