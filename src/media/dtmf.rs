//! RFC 4733 telephone-events in: the digits a party presses, from the RTP packets that carry
//! them, each digit reported once.
//!
//! A sender keeps one RTP timestamp for the whole of one key press: its first packet carries
//! the marker bit, later ones a growing duration, and the last one the end bit, usually sent
//! three times (RFC 4733 2.5.1). A press too long for the 16-bit duration continues in a new
//! segment with a new timestamp and no marker (2.5.1.3). So a press is known by its timestamp:
//! the first packet of a new one reports the digit; its updates, its end and their
//! retransmissions report nothing; a new timestamp that continues an unfinished press of the same
//! event without a marker reports nothing either. A lost start packet costs nothing (the next
//! packet of the press reports it); a packet of an earlier press arriving late is recognised by
//! the few timestamps remembered.
//!
//! Knows nothing of sockets, sessions or SIP: packets in, digits out. The engine feeds it the
//! caller's packets of the telephone-event payload type it negotiated.

use super::rtp;

/// Presses remembered, for packets that arrive late or twice.
const REMEMBER: usize = 8;

/// The digit of an RFC 4733 event code: 0-9, `*` (10), `#` (11), A-D (12-15); other events
/// (flash, tones) are no digit.
pub fn digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// The event code of a digit (`0`-`9`, `*`, `#`, `A`-`D`); what a config's digit is checked
/// against and what a test sends.
pub fn event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        _ => None,
    }
}

/// One press: its timestamp, its event and whether its end was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Press {
    ts: u32,
    event: u8,
    ended: bool,
}

/// The digits of one RTP stream of telephone-events.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The latest presses, newest last.
    recent: Vec<Press>,
}

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// One RTP packet of the telephone-event payload type: the digit it starts, if any.
    /// Anything too short or malformed is ignored.
    pub fn push(&mut self, pkt: &[u8]) -> Option<char> {
        let payload = rtp::payload(pkt);
        if !rtp::is_rtp_like(pkt) || payload.len() < 4 {
            return None;
        }
        let (ev, ended) = (payload[0], payload[1] & 0x80 != 0);
        let ts = rtp::timestamp(pkt);
        if let Some(p) = self.recent.iter_mut().find(|p| p.ts == ts && p.event == ev) {
            p.ended |= ended;
            return None;
        }
        let continues = !rtp::marker(pkt)
            && self
                .recent
                .last()
                .is_some_and(|p| !p.ended && p.event == ev);
        if self.recent.len() == REMEMBER {
            self.recent.remove(0);
        }
        self.recent.push(Press {
            ts,
            event: ev,
            ended,
        });
        if continues {
            return None;
        }
        digit(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RFC 4733 packet: `event` pressed at `ts`, `duration` so far, `end` bit.
    fn te(marker: bool, seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut p = rtp::header(101, marker, seq, ts, 0xD7F).to_vec();
        p.push(event);
        p.push(if end { 0x80 | 10 } else { 10 });
        p.extend_from_slice(&duration.to_be_bytes());
        p
    }

    /// The digits a packet sequence gives.
    fn digits(pkts: &[Vec<u8>]) -> String {
        let mut r = DtmfReceiver::new();
        pkts.iter().filter_map(|p| r.push(p)).collect()
    }

    /// A whole press as a sender sends it: start, two updates, the end three times.
    fn press(seq: u16, ts: u32, event: u8) -> Vec<Vec<u8>> {
        vec![
            te(true, seq, ts, event, false, 160),
            te(false, seq + 1, ts, event, false, 320),
            te(false, seq + 2, ts, event, false, 480),
            te(false, seq + 3, ts, event, true, 640),
            te(false, seq + 3, ts, event, true, 640),
            te(false, seq + 3, ts, event, true, 640),
        ]
    }

    #[test]
    fn one_digit_per_press_whatever_is_repeated() {
        assert_eq!(digits(&press(1, 8000, 1)), "1");
        // The same digit twice is two presses (two timestamps).
        let mut two = press(1, 8000, 5);
        two.extend(press(10, 9600, 5));
        assert_eq!(digits(&two), "55");
        // Duplicated packets (the network or a retransmitting sender) change nothing.
        let mut dup = press(1, 8000, 11);
        dup.extend(press(1, 8000, 11));
        assert_eq!(digits(&dup), "#");
        let all: Vec<Vec<u8>> = (0..16u8)
            .flat_map(|e| press(u16::from(e) * 10, 1000 * u32::from(e), e))
            .collect();
        assert_eq!(digits(&all), "0123456789*#ABCD");
    }

    #[test]
    fn a_lost_start_costs_nothing_and_a_late_packet_is_no_new_press() {
        // Start and first update lost: the next update reports the press.
        assert_eq!(digits(&press(1, 8000, 7)[2..]), "7");
        // Only the end packets arrived: still one press.
        assert_eq!(digits(&press(1, 8000, 7)[3..]), "7");
        // A packet of the first press arrives after the second press began.
        let mut late = press(1, 8000, 2);
        let second = press(10, 9600, 3);
        late.push(second[0].clone());
        late.push(te(false, 2, 8000, 2, false, 320));
        late.extend(second[1..].iter().cloned());
        assert_eq!(digits(&late), "23");
    }

    #[test]
    fn a_long_press_in_segments_is_one_digit() {
        // RFC 4733 2.5.1.3: a new timestamp without marker continues the unfinished press.
        let pkts = vec![
            te(true, 1, 8000, 9, false, 65535),
            te(false, 2, 73535, 9, false, 160),
            te(false, 3, 73535, 9, true, 320),
        ];
        assert_eq!(digits(&pkts), "9");
        // After its end, a new timestamp is a new press even if its marker was lost.
        let mut two = pkts.clone();
        two.push(te(false, 4, 80000, 9, false, 160));
        assert_eq!(digits(&two), "99");
        // A different event is a new press with or without a marker.
        let mut other = pkts[..2].to_vec();
        other.push(te(false, 5, 90000, 4, false, 160));
        assert_eq!(digits(&other), "94");
    }

    #[test]
    fn malformed_and_non_digit_events_give_nothing() {
        let mut r = DtmfReceiver::new();
        assert_eq!(r.push(&[]), None);
        assert_eq!(r.push(&te(true, 1, 8000, 1, false, 160)[..14]), None);
        assert_eq!(r.push(&te(true, 1, 8000, 16, false, 160)), None, "flash");
        let mut not_rtp = te(true, 2, 9000, 1, false, 160);
        not_rtp[0] = 0x40;
        assert_eq!(r.push(&not_rtp), None);
        assert_eq!(r.push(&te(true, 3, 9600, 1, false, 160)), Some('1'));
    }

    #[test]
    fn digits_and_events_map_both_ways() {
        for e in 0..16u8 {
            let d = digit(e).unwrap();
            assert_eq!(event(d), Some(e), "{d}");
        }
        assert_eq!(digit(16), None);
        assert_eq!(event('x'), None);
        assert_eq!(event('a'), None);
    }
}
