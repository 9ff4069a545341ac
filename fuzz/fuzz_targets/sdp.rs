//! SDP bodies (`media::sdp`): the offer and answers of every anchored call. Parse, read every
//! field the media engine uses, answer it and rewrite it; a rewritten body must parse again
//! and name the address it was rewritten to.

#![no_main]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use scamguard::media::sdp::Sdp;
use scamguard::media::Codec;

const ANCHOR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fuzz_target!(
    init: common::write_seeds(common::bodies),
    |data: &[u8]| {
        let Ok(sdp) = Sdp::parse(data) else {
            return;
        };
        let a = &sdp.audio;
        let _ = (a.rtp_addr(), a.rtcp_addr(), a.plain_rtp(), a.first_g711());
        let _ = (a.pt_for(Codec::Pcmu), a.pt_for(Codec::Pcma), a.telephone_event());
        let _ = sdp.answer(7, ANCHOR, 40000);
        let rewritten = sdp.rewrite(ANCHOR, 40002);
        let again = Sdp::parse(&rewritten).unwrap_or_else(|e| {
            panic!(
                "rewritten SDP does not parse ({e:?}): {:?}",
                String::from_utf8_lossy(&rewritten)
            )
        });
        if sdp.audio.port != 0 {
            assert_eq!(
                again.audio.rtp_addr(),
                Some(SocketAddr::new(ANCHOR, 40002)),
                "{:?}",
                String::from_utf8_lossy(&rewritten)
            );
        }
    }
);
