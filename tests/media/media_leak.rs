//! Nothing leaks: hundreds of sessions opened and then released or left to time out leave no
//! session, no port and no file descriptor behind; the session cap holds.

use std::path::PathBuf;

use crate::support::{alone, eventually};
use scamguard::media::{wav, MediaConfig, MediaEngine, MediaError, Release, Side};

fn config(tag: &str, port_min: u16, port_max: u16, max_sessions: usize) -> MediaConfig {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("scamguard-media-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("en.wav"), wav::encode_pcm16(&[1000; 1600])).unwrap();
    MediaConfig {
        enabled: true,
        bind_ip: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max,
        max_sessions,
        idle_timeout_secs: 1,
        setup_timeout_secs: 1,
        prompts_dir: dir.to_string_lossy().into_owned(),
        prompts: Default::default(),
        ..MediaConfig::default()
    }
}

fn offer(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\n"
    )
    .into_bytes()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sessions_released_or_idled_leave_nothing() {
    // It counts the process's file descriptors, which the binary's other tests (threads of the
    // same process) open and close as they go: in a process of its own.
    if !alone(
        module_path!(),
        "five_hundred_sessions_released_or_idled_leave_nothing",
    ) {
        return;
    }
    const N: usize = 500;
    let engine = MediaEngine::new(config("leak", 22000, 24999, N)).unwrap();
    let fds = open_fds();
    for i in 0..N {
        let id = format!("leak-{i}");
        engine.offer(&id, Side::Caller, &offer(4000)).unwrap();
        engine.answer(&id, Side::Callee, &offer(4002)).unwrap();
        if i % 3 == 0 {
            // a third are answered (their idle timer, not the setup timer, frees them)
            engine.connected(&id, "1", None).unwrap();
        }
    }
    assert_eq!(engine.sessions(), N);
    assert_eq!(engine.ports_in_use(), 4 * N);
    assert!(open_fds() >= 4 * N);

    // Half are released explicitly, the rest must time out on their own.
    let mut closing = Vec::new();
    for i in (0..N).step_by(2) {
        closing.push(engine.release(&format!("leak-{i}"), Release::Bye).unwrap());
    }
    for c in closing {
        c.wait().await;
    }
    assert_eq!(engine.sessions(), N / 2);
    eventually("the other sessions time out", || async {
        engine.sessions() == 0
    })
    .await;
    eventually("every port is free", || async {
        engine.ports_in_use() == 0
    })
    .await;
    eventually("every descriptor is closed", || async { open_fds() <= fds }).await;
    let s = engine.stats();
    assert_eq!(s.released_bye.get(), (N / 2) as u64);
    assert_eq!(s.released_idle.get(), (N / 2) as u64);
    assert_eq!(s.sessions_active.get(), 0);
}

#[tokio::test]
async fn session_cap_and_port_exhaustion_are_error_values() {
    let engine = MediaEngine::new(config("cap", 25000, 25019, 3)).unwrap();
    for i in 0..3 {
        engine
            .offer(&format!("c{i}"), Side::Caller, &offer(4000))
            .unwrap();
    }
    assert_eq!(
        engine.offer("c3", Side::Caller, &offer(4000)),
        Err(MediaError::Full(3))
    );
    // the same call id again is a re-offer, not a new session
    engine.offer("c1", Side::Caller, &offer(4000)).unwrap();
    engine.release("c0", Release::Cancel).unwrap().wait().await;
    engine.offer("c3", Side::Caller, &offer(4000)).unwrap();
    assert_eq!(engine.sessions(), 3);
    assert_eq!(engine.stats().sessions_refused.get(), 1);
    engine.shutdown().await;
    assert_eq!((engine.sessions(), engine.ports_in_use()), (0, 0));

    // A range where another program holds some ports: those pairs are skipped, and when no
    // pair can be bound the offer fails cleanly.
    let engine = MediaEngine::new(config("ports", 25100, 25107, 2)).unwrap();
    let _squat: Vec<_> = (25100..25104)
        .map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).unwrap())
        .collect();
    engine.offer("p0", Side::Caller, &offer(4000)).unwrap();
    assert_eq!(engine.ports("p0"), Some((25104, 25106)));
    assert_eq!(
        engine.offer("p1", Side::Caller, &offer(4000)),
        Err(MediaError::NoPorts)
    );
    assert_eq!(engine.ports_in_use(), 4);
    assert_eq!(engine.sessions(), 1);
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let engine = MediaEngine::new(config("nort", 25200, 25219, 2)).unwrap();
    assert_eq!(
        engine.offer("x", Side::Caller, &offer(4000)),
        Err(MediaError::NoRuntime)
    );
}
