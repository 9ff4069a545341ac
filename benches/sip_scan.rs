//! The message scan alone: one typical INVITE through `Message::parse` (framing, header index,
//! the RFC 4475 checks). The whole sans-IO handling of a new INVITE, with the real screening
//! hook and every signal on, is `benches/invite.rs`.
//!
//! The INVITE is the one the peer harness's SIPp caller sends (P-Asserted-Identity, SDP body).
//!
//! Run: `cargo bench --bench sip_scan`. Knows nothing of the load harness.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use scamguard::sip::msg::{Limits, Message};

const BLOCKED: &str = "+4930123456789";

fn invite(caller: &str, n: u64) -> Bytes {
    let body =
        "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    Bytes::from(format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-4242-{n}-0\r\n\
         From: <sip:anonymous@127.0.0.1>;tag=4242SIPpTag00{n}\r\n\
         To: <sip:service@127.0.0.1:5060>\r\n\
         Call-ID: {n}-4242@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@127.0.0.1:5080>\r\n\
         Max-Forwards: 70\r\n\
         P-Asserted-Identity: <sip:{caller}@carrier.example>\r\n\
         X-Bench-Expect: block 4930123456789\r\n\
         Subject: screening benchmark\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn bench_scan(c: &mut Criterion) {
    let msg = invite(BLOCKED, 1);
    let limits = Limits::default();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("invite", |b| {
        b.iter(|| Message::parse(black_box(msg.clone()), &limits, true).map(|m| m.headers.len()))
    });
    g.finish();
}

criterion_group!(benches, bench_scan);
criterion_main!(benches);
