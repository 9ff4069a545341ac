//! The one interface through which the SIP layer learns what to do with a call: the [`Hook`]
//! trait and the facts ([`NewCall`]) and answers ([`Disposition`]) that cross it.
//!
//! Every call hands the hook `now`, the instant the message was taken in, so the application
//! never reads the clock itself. What the application wants to remember about a forwarded call
//! it returns as a [`CallTag`]; the proxy keeps it with the call (bounded and timed out like the
//! call) and hands it back with every later event, so the application keeps no table of its own.
//!
//! Knows nothing of why a call is blocked, warned or passed; that lives behind the trait.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::msg::{Hdr, Message};
use super::uri::{NameAddr, Uri};
use super::Transport;

/// What the application decides for a new call. Called once per initial INVITE transaction.
pub trait Hook: Send + Sync + 'static {
    /// A new INVITE outside any dialog the proxy knows (no To tag, or one of no dialog it
    /// Record-Routed), or such a MESSAGE ([`NewCall::message`]); called once per server
    /// transaction, never for its retransmissions. Must not block: it runs on the receive
    /// path. For a MESSAGE a forward is sent on without Record-Route, media or events.
    fn new_call(&self, call: &NewCall<'_>, now: Instant) -> Disposition;
    /// Later facts about a call that was forwarded, with the tag its disposition gave it.
    fn call_event(&self, call: &CallRef<'_>, event: CallEvent, now: Instant);
    /// For dialogs forwarded with `anchor_media`: every later SDP body (answers, and offers in
    /// re-INVITE/UPDATE/ACK/PRACK, either direction; the initial offer came back in the
    /// disposition). Return a replacement body or `None`. Retransmitted 18x/2xx responses are
    /// passed again, so the rewrite must be idempotent.
    fn rewrite_sdp(
        &self,
        call: &CallRef<'_>,
        dir: SdpDirection,
        kind: SdpKind,
        body: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>>;
    /// The initial offer of an anchored call (the body its disposition gave) is about to go to
    /// the callee's side at `to`: return it rewritten for that address's family (IPv4 or
    /// IPv6), or `None` to send it as it is. Called once per address the INVITE is sent to
    /// first (not for a failover).
    fn sdp_toward(&self, call: &CallRef<'_>, to: IpAddr, body: &[u8]) -> Option<Vec<u8>> {
        let _ = (call, to, body);
        None
    }
    /// Calls held by [`Disposition::Hold`] whose fate is now known: each Call-ID with what to do
    /// with it (a reject, a forward or a divert; another hold is answered 500). Asked on every
    /// timer tick of the proxy ([`super::Proxy::poll`]), so it must be cheap when nothing waits.
    /// A Call-ID no longer held (cancelled, timed out, unknown) is ignored.
    fn resumed(&self, now: Instant) -> Vec<(String, Disposition)> {
        let _ = now;
        Vec::new()
    }
    /// Whether a new INVITE to `target` (its Request-URI's user part, unescaped) must be carried
    /// even from a source over its budget: an emergency call, which only the application can
    /// recognise. Asked only where the edge would refuse or drop the INVITE (a banned source, a
    /// full transaction budget), so it must be cheap and never block.
    fn urgent(&self, target: &str) -> bool {
        let _ = target;
        false
    }
}

/// What the application keeps with a forwarded call. Opaque to the proxy, which only holds it
/// and hands it back; two tags are equal when they are the same allocation.
#[derive(Clone)]
pub struct CallTag(pub Arc<dyn Any + Send + Sync>);

impl CallTag {
    pub fn new<T: Any + Send + Sync>(value: T) -> CallTag {
        CallTag(Arc::new(value))
    }

    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for CallTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallTag(..)")
    }
}

impl PartialEq for CallTag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CallTag {}

/// A forwarded call as the proxy knows it when it reports on it.
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    pub call_id: &'a str,
    /// The tag its disposition returned, while the call is tracked.
    pub tag: Option<&'a CallTag>,
}

impl CallRef<'_> {
    /// The application's own value in the tag, if it is of type `T`.
    pub fn tag<T: Any>(&self) -> Option<&T> {
        self.tag.and_then(CallTag::get)
    }
}

/// What the proxy is to do with a new call: its disposition (answer it here, or forward it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Answer the INVITE with this final response (code 300..=699); `headers` are whole
    /// header lines without line breaks, e.g. `Reason: SIP;cause=603;text="..."`.
    Reject {
        code: u16,
        phrase: String,
        headers: Vec<String>,
    },
    /// Forward the INVITE to the next hop.
    Forward {
        /// Rewrite the display name of From and every P-Asserted-Identity to this text.
        display_name: Option<String>,
        /// Header lines (without line breaks) appended to the forwarded INVITE.
        headers: Vec<String>,
        /// Stay in the dialog (Record-Route), needed to see BYE and re-INVITEs.
        record_route: bool,
        /// Pass every later SDP body of the dialog through [`Hook::rewrite_sdp`]; implies
        /// `record_route`.
        anchor_media: bool,
        /// The INVITE's SDP offer as rewritten by the application (with `anchor_media`).
        offer: Option<Vec<u8>>,
        /// Kept with the call and handed back with its events.
        tag: Option<CallTag>,
    },
    /// Answer the INVITE with a provisional response carrying the application's own SDP answer
    /// (early media: a 183 the caller hears before anything rings, and nothing is billed) and
    /// hold it: nothing goes downstream until [`Hook::resumed`] gives the call's disposition.
    /// Meanwhile the call is tracked (a CANCEL is reported as [`CallEvent::Cancelled`]); one
    /// still held after Timer C is answered 408 and reported as [`CallEvent::TimedOut`].
    Hold {
        /// 180..=199 (another code is sent as 183 Session Progress).
        code: u16,
        phrase: String,
        /// Header lines (without line breaks) added to the provisional response.
        headers: Vec<String>,
        /// The SDP answer to the INVITE's offer.
        sdp: Vec<u8>,
        /// Kept with the call (and with the forward it may become) and handed back with events.
        tag: Option<CallTag>,
    },
    /// Do what `then` says with the Request-URI's user part replaced by `user`: forwarded, the
    /// call reaches the next hop as one dialled to `user` (a diversion to a safe line).
    Divert {
        user: String,
        then: Box<Disposition>,
    },
}

impl Disposition {
    /// A forward (diverted or not) that also carries the application's rewritten offer and its
    /// tag for the call; a reject or a hold is returned as it is.
    pub fn with_call(mut self, rewritten: Option<Vec<u8>>, call_tag: CallTag) -> Disposition {
        match &mut self {
            Disposition::Forward { offer, tag, .. } => {
                *offer = rewritten;
                *tag = Some(call_tag);
            }
            Disposition::Divert { then, .. } => {
                let inner = std::mem::replace(&mut **then, Disposition::pass());
                **then = inner.with_call(rewritten, call_tag);
            }
            Disposition::Reject { .. } | Disposition::Hold { .. } => {}
        }
        self
    }

    /// Forward untouched, not staying in the dialog.
    pub fn pass() -> Disposition {
        Disposition::Forward {
            display_name: None,
            headers: Vec::new(),
            record_route: false,
            anchor_media: false,
            offer: None,
            tag: None,
        }
    }
}

/// Facts about a forwarded call after its disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// The callee answered (first 2xx to the INVITE).
    Answered,
    /// The caller cancelled before an answer.
    Cancelled,
    /// The call failed with this final status (not 607, not after a CANCEL).
    Failed(u16),
    /// The callee answered `607 Unwanted` (RFC 8197).
    Unwanted,
    /// A BYE ended the dialog.
    Ended,
    /// No final response arrived in time (Timer B/C); the caller got `408`.
    TimedOut,
}

/// Whether an SDP body offers or answers (RFC 3264), judged by the message carrying it: a request
/// other than ACK carries an offer; a response or an ACK carries an answer. (A late offer, an
/// INVITE without SDP whose 2xx carries the offer, is therefore reported as an answer; the
/// application can tell by never having seen an offer.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

/// Which side an SDP body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpDirection {
    /// From the calling side (the offer in the initial INVITE, the caller's re-INVITEs...).
    FromCaller,
    /// From the called side (answers in 18x/2xx, the callee's re-INVITEs...).
    FromCallee,
}

/// The facts of a new initial INVITE, borrowed from the received message.
pub struct NewCall<'a> {
    msg: &'a Message,
    pub source: SocketAddr,
    pub transport: Transport,
    /// The source is one of `[sip] trusted_peers`: its asserted identity and `verstat` count.
    pub trusted: bool,
    /// An out-of-dialog MESSAGE (RFC 3428), not an INVITE: there is no callee to alert and no
    /// dialog, so it is answered here or sent on as it is, with headers added.
    pub message: bool,
    pub call_id: &'a str,
    pub request_uri: Option<Uri<'a>>,
    pub from: Option<NameAddr<'a>>,
    pub to: Option<NameAddr<'a>>,
    /// Every P-Asserted-Identity value, in order (values that do not parse are skipped).
    pub asserted: Vec<NameAddr<'a>>,
    pub privacy: Option<&'a str>,
    pub identity: Option<&'a str>,
}

impl<'a> NewCall<'a> {
    /// The facts of `msg` as the proxy reads them for the hook; public so that the fuzz targets
    /// (`fuzz/`) can reach the caller-id code without a proxy around it.
    pub fn new(
        msg: &'a Message,
        source: SocketAddr,
        transport: Transport,
        trusted: bool,
    ) -> NewCall<'a> {
        NewCall {
            msg,
            source,
            transport,
            trusted,
            message: msg.method() == b"MESSAGE",
            call_id: msg.call_id().unwrap_or(""),
            request_uri: msg.request_uri(),
            from: msg.from(),
            to: msg.to(),
            asserted: msg
                .values_str(Hdr::PAssertedIdentity)
                .filter_map(|v| NameAddr::parse(v).ok())
                .collect(),
            privacy: msg.header_by_name("Privacy"),
            identity: msg.header_by_name("Identity"),
        }
    }

    /// The first value of any header by name (case-insensitive; compact forms understood).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.msg.header_by_name(name)
    }

    /// Who is calling and whom, as carried (see [`super::caller`]).
    pub fn parties(&self) -> super::caller::Parties<'a> {
        super::caller::parties(self, self.trusted)
    }

    /// The SDP offer, if the INVITE carries one.
    pub fn body(&self) -> &'a [u8] {
        self.msg.body_bytes()
    }

    /// The body when it is SDP (by Content-Type): the offer an anchored call rewrites.
    pub fn sdp(&self) -> Option<&'a [u8]> {
        self.msg.body_is_sdp().then(|| self.msg.body_bytes())
    }
}
