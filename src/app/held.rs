//! Calls held with an early prompt: the caller hears the agent before anything rings (a 183 with
//! our own SDP, so nothing is billed), and the call goes on, or not, once the prompt has ended.
//! Callback protection (`super::callback`) warns protected subscribers this way and the
//! challenge (`super::challenge`) asks suspect callers for a digit; both hold the call here.
//!
//! A held call waits in the proxy (`sip::Disposition::Hold`). When the media engine says how the
//! prompt ended, the call is queued ([`Queue`]) with what it needs later (its kind, the INVITE's
//! offer, its tag) and the proxy takes it on its next tick ([`crate::sip::Hook::resumed`]): the
//! app keeps no table of calls. A call whose session is released first (CANCEL, Timer C) is never
//! queued: its entry is dropped with the prompt's callback. Knows nothing of why a call is held.

use std::sync::{Arc, Mutex};

use crate::media::sdp::Sdp;
use crate::media::{Gate, Heard, MediaEngine, Prompt, Side};
use crate::sip::{CallTag, Disposition, NewCall};

/// A held call, as its prompt's callback carries it to the queue; `K` says what becomes of it.
pub(super) struct Held<K> {
    pub call_id: String,
    pub kind: K,
    /// The INVITE's offer, to anchor the call when it goes on.
    pub offer: Vec<u8>,
    pub tag: CallTag,
}

/// Held calls whose prompt has ended, for the proxy's next tick. One entry per held call at
/// most, taken at the next tick.
pub(super) struct Queue<K>(Mutex<Vec<(Held<K>, Heard)>>);

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Queue(Mutex::new(Vec::new()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Send + 'static> Queue<K> {
    /// Every call decided since the last take.
    pub fn take(&self) -> Vec<(Held<K>, Heard)> {
        std::mem::take(&mut *lock(&self.0))
    }

    /// Answer the caller's offer with early media playing `prompt`, and hold the call until the
    /// prompt has ended as `gate` says; `Err` says why it cannot be (for the decision log).
    pub fn hold(
        self: &Arc<Self>,
        media: &MediaEngine,
        call: &NewCall<'_>,
        (prompt, gate): (Arc<Prompt>, Gate),
        kind: K,
        tag: CallTag,
    ) -> Result<Disposition, &'static str> {
        let offer = offer(call).ok_or("no early media (the INVITE carries no SDP offer)")?;
        let held = Held {
            call_id: call.call_id.to_string(),
            kind,
            offer: offer.to_vec(),
            tag: tag.clone(),
        };
        let queue = self.clone();
        let done = Box::new(move |heard| lock(&queue.0).push((held, heard)));
        let sdp = media
            .early(call.call_id, offer, prompt, gate, done)
            .map_err(|e| super::screener::skipped(&e))?;
        Ok(Disposition::Hold {
            code: 183,
            phrase: "Session Progress".into(),
            headers: Vec::new(),
            sdp,
            tag: Some(tag),
        })
    }
}

/// The INVITE's SDP offer, when it has one.
pub(super) fn offer<'a>(call: &'a NewCall<'_>) -> Option<&'a [u8]> {
    call.sdp().filter(|b| !b.is_empty())
}

/// Does the offer carry RFC 4733 telephone-events? Only then can a digit be asked for.
pub(super) fn offers_digits(offer: &[u8]) -> bool {
    Sdp::parse(offer).is_ok_and(|s| s.audio.telephone_event().is_some())
}

/// Forward a held call untouched (no display name, no verdict header), anchored when `offer`
/// (rewritten by the media engine) is given.
pub(super) fn onward(offer: Option<Vec<u8>>, tag: CallTag) -> Disposition {
    Disposition::Forward {
        display_name: None,
        headers: Vec::new(),
        record_route: true,
        anchor_media: offer.is_some(),
        offer,
        tag: Some(tag),
    }
}

/// A held call goes on through the session that played its prompt: the INVITE's offer now
/// points the callee at leg B, and the caller keeps talking to leg A, where the 183 pointed it.
pub(super) fn anchored<K>(media: &MediaEngine, held: &Held<K>) -> Disposition {
    let id = held.call_id.as_str();
    match media.offer(id, Side::Caller, &held.offer) {
        Ok(body) => onward(Some(body), held.tag.clone()),
        Err(e) => {
            // The session is gone (idled out): the call goes on end to end.
            tracing::info!(call_id = id, "held call not anchored: {e}");
            onward(None, held.tag.clone())
        }
    }
}
