//! Media sessions: port pairs, SDP anchoring per call, and one tokio task per call that relays
//! RTP/RTCP between the two legs and plays the announcement.
//!
//! Why one task per call (not per leg, not a shared pool): the four sockets of a call share one
//! small state (latched addresses, the prompt clock, the sequence rewrite after the prompt), so
//! keeping it in one task means no locks and no channels on the packet path; an idle call costs
//! one parked task and one timer, and tokio spreads the tasks over the cores. A shared reactor
//! of our own would only re-implement tokio's.
//!
//! IPv6: with `bind_ip = "::"` every leg's sockets are dual-stack (`IPV6_V6ONLY` off), so one
//! socket pair per leg serves a party of either family and the port budget is the same as
//! for one family; a v4 caller and a v6 callee are relayed across families by the same two
//! legs. Each party is given our address in its own family (`c=IN IP4` or `c=IN IP6`): the
//! family of its own SDP once we have seen it, before that the family of the SIP hop it is
//! reached by ([`MediaEngine::toward`]), else that of `advertise_ip`.
//!
//! Knows call ids, SDP and RTP only: nothing of SIP, dialogs or blocklists.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use super::dtmf::DtmfReceiver;
use super::g711::Codec;
use super::prompts::{Prompt, PromptSet, FRAME};
use super::rtp;
use super::sdp::{AudioInfo, Sdp};
use super::{MediaConfig, MediaError, MediaStats};

/// 20 ms, one prompt frame.
const PTIME: Duration = Duration::from_millis(20);

/// Which party an SDP body came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Caller,
    Callee,
}

/// Why a session is released (counted per reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The dialog ended normally.
    Bye,
    /// The call was cancelled or never answered.
    Cancel,
    /// The call failed (error response, transaction timeout).
    Failed,
    /// The agent is stopping.
    Shutdown,
}

/// What the caller must do after an early prompt before its call may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Hear the prompt to its end.
    Hear,
    /// Hear it, then press `digit` (RFC 4733 telephone-event) within `wait`.
    Press { digit: char, wait: Duration },
}

/// How an early prompt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Played to its end ([`Gate::Hear`]).
    Played,
    /// The digit was pressed after the prompt, in time.
    Confirmed,
    /// No digit in time.
    TimedOut,
}

/// Told once how an early prompt ended, from the session's task. Never told when the session
/// is released first (the call was cancelled or failed meanwhile).
pub type Done = Box<dyn FnOnce(Heard) + Send>;

/// Resolves when a released session's task has ended and its ports are free.
pub struct Closing(JoinHandle<()>);

impl Closing {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// The media engine. Cheap to clone; all clones share the sessions.
#[derive(Clone)]
pub struct MediaEngine {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: MediaConfig,
    /// What we write in SDP towards an IPv4 and an IPv6 party (one of them at least).
    advertise: (Option<IpAddr>, Option<IpAddr>),
    prompts: PromptSet,
    pool: Arc<PortPool>,
    sessions: DashMap<String, Handle>,
    stats: Arc<MediaStats>,
    next_id: AtomicU64,
    /// Tasks alive (a released session counts until its task has ended).
    live: AtomicUsize,
}

/// What the engine keeps per call outside the task: enough to rewrite SDP and decide when the
/// prompt starts.
struct Handle {
    id: u64,
    a_port: u16,
    b_port: u16,
    /// Whether the caller (leg A) and the callee (leg B) are written to in IPv6.
    a_v6: bool,
    b_v6: bool,
    ctl: mpsc::Sender<Ctl>,
    task: Option<JoinHandle<()>>,
    callee: Option<AudioInfo>,
    /// Codec of the latest answer: `None` = no answer yet, `Some(None)` = answer without G.711.
    answer_codec: Option<Option<Codec>>,
    connected: Option<Arc<Prompt>>,
    prompt_started: bool,
}

enum Ctl {
    Remote {
        side: Side,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
    },
    Answered,
    Play {
        prompt: Arc<Prompt>,
        codec: Codec,
        pt: u8,
    },
    /// Play to the caller before the call goes on (early media), then wait as `gate` says.
    Early {
        prompt: Arc<Prompt>,
        codec: Codec,
        pt: u8,
        te: Option<u8>,
        gate: Gate,
        done: Done,
    },
}

impl MediaEngine {
    /// Build the engine from a config that has passed [`MediaConfig::validate`], loading every
    /// prompt (the only file I/O, and with a disabled config, [`MediaError::Disabled`], the only
    /// error left: the app then builds no engine).
    pub fn new(cfg: MediaConfig) -> Result<MediaEngine, MediaError> {
        if !cfg.enabled {
            return Err(MediaError::Disabled);
        }
        let advertise = (cfg.advertised_for(false), cfg.advertised_for(true));
        let prompts = PromptSet::load(&cfg)?;
        let stats = Arc::new(MediaStats::default());
        stats.ports_total.set(2 * cfg.pairs() as i64);
        stats.sessions_max.set(cfg.max_sessions as i64);
        let first = cfg.port_min + (cfg.port_min & 1);
        let free = (0..cfg.pairs()).map(|i| first + 2 * i as u16).collect();
        Ok(MediaEngine {
            inner: Arc::new(Inner {
                pool: Arc::new(PortPool {
                    free: Mutex::new(free),
                    stats: stats.clone(),
                }),
                advertise,
                prompts,
                cfg,
                sessions: DashMap::new(),
                stats,
                next_id: AtomicU64::new(1),
                live: AtomicUsize::new(0),
            }),
        })
    }

    /// An SDP offer of the call (initial INVITE, re-INVITE, UPDATE; either party).
    ///
    /// The first offer opens the session (two port pairs) and must be plain RTP listing PCMU or
    /// PCMA, else [`MediaError::NotPlainRtp`] / [`MediaError::NoG711`] and nothing is
    /// allocated. Returns the body to forward, pointing the other party at the leg that faces
    /// it. Later offers keep the same ports, so hold and resume work.
    ///
    /// Must be called inside a tokio runtime (the session's task is spawned on it).
    pub fn offer(&self, call_id: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let parsed = Sdp::parse(sdp)?;
        let inner = &self.inner;
        if let Some(mut h) = inner.sessions.get_mut(call_id) {
            return Ok(inner.apply(&mut h, from, &parsed, false));
        }
        if !parsed.audio.plain_rtp() {
            return Err(MediaError::NotPlainRtp(parsed.audio.proto.clone()));
        }
        if parsed.audio.first_g711().is_none() {
            return Err(MediaError::NoG711);
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        match inner.sessions.entry(call_id.to_string()) {
            Entry::Occupied(mut e) => Ok(inner.apply(e.get_mut(), from, &parsed, false)),
            Entry::Vacant(e) => {
                let mut h = Inner::open(&self.inner, call_id, &rt)?;
                let out = inner.apply(&mut h, from, &parsed, false);
                e.insert(h);
                Ok(out)
            }
        }
    }

    /// An SDP answer of the call (183/200 to an offer, or the ACK of a late offer).
    ///
    /// An answer without G.711 is still anchored and relayed, but no prompt will play
    /// ([`MediaStats::prompts_skipped`]; [`MediaEngine::connected`] reports it).
    pub fn answer(&self, call_id: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let parsed = Sdp::parse(sdp)?;
        let mut h = self
            .inner
            .sessions
            .get_mut(call_id)
            .ok_or(MediaError::UnknownCall)?;
        let out = self.inner.apply(&mut h, from, &parsed, true);
        // A late answer without G.711 must still be rewritten (the offer already points at
        // us); the skip is counted and logged, and `connected` reported it if it came first.
        if let Err(e) = self.inner.maybe_play(&mut h) {
            tracing::info!(call_id, "no announcement: {e}");
        }
        Ok(out)
    }

    /// The callee answered (2xx): play the prompt chosen for `callee` (a country code or E.164
    /// number) and `category`, as soon as the codec is known (now, or with a late answer).
    pub fn connected(
        &self,
        call_id: &str,
        callee: &str,
        category: Option<&str>,
    ) -> Result<(), MediaError> {
        let mut h = self
            .inner
            .sessions
            .get_mut(call_id)
            .ok_or(MediaError::UnknownCall)?;
        if h.connected.is_none() {
            h.connected = Some(self.inner.prompts.select(callee, category));
            let _ = h.ctl.try_send(Ctl::Answered);
        }
        self.inner.maybe_play(&mut h)
    }

    /// Answer the caller's SDP `offer` ourselves and play `prompt` to the caller before the call
    /// goes anywhere (early media, for a 183): opens the session (two port pairs) and returns our
    /// SDP answer, pointing the caller at leg A, with the first G.711 codec of the offer and
    /// telephone-events when offered. When the prompt has played (and with [`Gate::Press`] the
    /// digit was pressed after it, or not in time) the session's task calls `done` once.
    ///
    /// The session then stays, silent, for the call to go on: forward the INVITE with the body
    /// [`MediaEngine::offer`]`(id, Side::Caller, offer)` returns and the callee's answers go
    /// through [`MediaEngine::answer`] as for any anchored call; or [`MediaEngine::release`] it.
    /// The caller's audio reaches nobody until then. Must be called inside a tokio runtime.
    pub fn early(
        &self,
        call_id: &str,
        offer: &[u8],
        prompt: Arc<Prompt>,
        gate: Gate,
        done: Done,
    ) -> Result<Vec<u8>, MediaError> {
        let parsed = Sdp::parse(offer)?;
        let audio = &parsed.audio;
        if !audio.plain_rtp() {
            return Err(MediaError::NotPlainRtp(audio.proto.clone()));
        }
        let (codec, pt) = audio.first_g711().ok_or(MediaError::NoG711)?;
        let inner = &self.inner;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let Entry::Vacant(e) = inner.sessions.entry(call_id.to_string()) else {
            return Err(MediaError::Exists);
        };
        let ip = inner.ip_for(Inner::is_v6(&parsed).unwrap_or(false));
        // Answerable before any port is taken: nothing to give back on refusal.
        parsed.answer(0, ip, 0).ok_or(MediaError::NotListening)?;
        let mut h = Inner::open(&self.inner, call_id, &rt)?;
        h.a_v6 = ip.is_ipv6();
        let answer = parsed
            .answer(h.id, ip, h.a_port)
            .ok_or(MediaError::NotListening)?;
        let _ = h.ctl.try_send(Ctl::Remote {
            side: Side::Caller,
            rtp: audio.rtp_addr(),
            rtcp: audio.rtcp_addr(),
        });
        inner.stats.prompts_started.inc();
        let _ = h.ctl.try_send(Ctl::Early {
            prompt,
            codec,
            pt,
            te: audio.telephone_event(),
            gate,
            done,
        });
        e.insert(h);
        Ok(answer)
    }

    /// `side` is reached by SIP at `peer` (the next hop an initial INVITE goes to): until its own
    /// SDP says otherwise, write our address to it in `peer`'s family. `sdp` is the body the
    /// engine gave for that side; returns it rewritten when the family changed (`None`: keep
    /// it, or unknown call, or no address of that family configured).
    pub fn toward(&self, call_id: &str, side: Side, peer: IpAddr, sdp: &[u8]) -> Option<Vec<u8>> {
        let inner = &self.inner;
        let v6 = peer.to_canonical().is_ipv6();
        let ip = match v6 {
            true => inner.advertise.1?,
            false => inner.advertise.0?,
        };
        let mut entry = inner.sessions.get_mut(call_id)?;
        let h = &mut *entry;
        let (cur, port) = match side {
            Side::Caller => (&mut h.a_v6, h.a_port),
            Side::Callee => (&mut h.b_v6, h.b_port),
        };
        if *cur == v6 {
            return None;
        }
        *cur = v6;
        Some(Sdp::parse(sdp).ok()?.rewrite(ip, port))
    }

    /// The callee answered a call whose callee hears no prompt: the session now ends after
    /// `idle_timeout_secs` without media instead of `setup_timeout_secs`.
    pub fn answered(&self, call_id: &str) -> Result<(), MediaError> {
        let h = self
            .inner
            .sessions
            .get(call_id)
            .ok_or(MediaError::UnknownCall)?;
        let _ = h.ctl.try_send(Ctl::Answered);
        Ok(())
    }

    /// End a call's media: the task stops and its ports are freed. `None` if unknown.
    pub fn release(&self, call_id: &str, why: Release) -> Option<Closing> {
        let (_, mut h) = self.inner.sessions.remove(call_id)?;
        let s = &self.inner.stats;
        match why {
            Release::Bye => s.released_bye.inc(),
            Release::Cancel => s.released_cancel.inc(),
            Release::Failed => s.released_failed.inc(),
            Release::Shutdown => s.released_shutdown.inc(),
        }
        tracing::debug!(call_id, ?why, "media released");
        // Dropping the handle drops the only sender: the task sees the channel close and ends.
        h.task.take().map(Closing)
    }

    /// Release every session and wait until all ports are free.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self
            .inner
            .sessions
            .iter()
            .map(|e| e.key().clone())
            .collect();
        for id in ids {
            if let Some(c) = self.release(&id, Release::Shutdown) {
                c.wait().await;
            }
        }
    }

    /// Sessions in the table.
    pub fn sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// UDP ports currently bound (two per leg, four per call).
    pub fn ports_in_use(&self) -> usize {
        self.inner.stats.ports_in_use.get().max(0) as usize
    }

    /// The RTP ports of leg A (facing the caller) and leg B (facing the callee).
    pub fn ports(&self, call_id: &str) -> Option<(u16, u16)> {
        self.inner
            .sessions
            .get(call_id)
            .map(|h| (h.a_port, h.b_port))
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        self.inner.stats.clone()
    }

    pub fn prompts(&self) -> &PromptSet {
        &self.inner.prompts
    }
}

impl Inner {
    fn open(
        this: &Arc<Inner>,
        call_id: &str,
        rt: &tokio::runtime::Handle,
    ) -> Result<Handle, MediaError> {
        let max = this.cfg.max_sessions;
        if this.live.fetch_add(1, Ordering::AcqRel) >= max {
            this.live.fetch_sub(1, Ordering::AcqRel);
            this.stats.sessions_refused.inc();
            return Err(MediaError::Full(max));
        }
        let legs = this
            .bind_leg(rt)
            .and_then(|a| this.bind_leg(rt).map(|b| (a, b)));
        let (a, b) = match legs {
            Ok(l) => l,
            Err(e) => {
                this.live.fetch_sub(1, Ordering::AcqRel);
                this.stats.sessions_refused.inc();
                return Err(e);
            }
        };
        let id = this.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        let (a_port, b_port) = (a.port, b.port);
        let v6 = this.advertise.0.is_none();
        this.stats.sessions_started.inc();
        this.stats.sessions_active.inc();
        let task = Task {
            engine: Arc::downgrade(this),
            stats: this.stats.clone(),
            call_id: call_id.to_string(),
            id,
            hold_caller: this.cfg.hold_caller_during_prompt,
            idle: Duration::from_secs(this.cfg.idle_timeout_secs),
            setup: Duration::from_secs(this.cfg.setup_timeout_secs),
            start_wait: Duration::from_millis(this.cfg.prompt_start_wait_ms),
            v6: this.cfg.bind_ip.is_ipv6(),
        };
        let join = rt.spawn(task.run(a, b, rx));
        Ok(Handle {
            id,
            a_port,
            b_port,
            a_v6: v6,
            b_v6: v6,
            ctl: tx,
            task: Some(join),
            callee: None,
            answer_codec: None,
            connected: None,
            prompt_started: false,
        })
    }

    fn bind_leg(&self, rt: &tokio::runtime::Handle) -> Result<Leg, MediaError> {
        let _guard = rt.enter();
        // A pair may be held by another program; skip it (it goes to the back of the queue).
        for _ in 0..16 {
            let lease = self.pool.take().ok_or(MediaError::NoPorts)?;
            let bind = |port| -> std::io::Result<UdpSocket> {
                let at = SocketAddr::new(self.cfg.bind_ip, port);
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(at),
                    socket2::Type::DGRAM,
                    Some(socket2::Protocol::UDP),
                )?;
                if at.is_ipv6() {
                    // `::` serves both families (see the module's doc); a specific address
                    // only its own.
                    s.set_only_v6(!at.ip().is_unspecified())?;
                }
                s.set_nonblocking(true)?;
                s.bind(&at.into())?;
                UdpSocket::from_std(s.into())
            };
            if let (Ok(rtp), Ok(rtcp)) = (bind(lease.base), bind(lease.base + 1)) {
                return Ok(Leg {
                    port: lease.base,
                    rtp,
                    rtcp,
                    _lease: lease,
                });
            }
        }
        Err(MediaError::NoPorts)
    }

    /// Our address in one family, or the other's when only that one is configured.
    fn ip_for(&self, v6: bool) -> IpAddr {
        let (v4, v6a) = self.advertise;
        let (want, other) = if v6 { (v6a, v4) } else { (v4, v6a) };
        want.or(other).unwrap_or(self.cfg.bind_ip)
    }

    /// Whether an SDP's audio address is IPv6 (`None`: it has none, or the null address).
    fn is_v6(sdp: &Sdp<'_>) -> Option<bool> {
        sdp.audio
            .rtp_addr()
            .map(|a| a.ip().to_canonical().is_ipv6())
    }

    /// Record one side's SDP, tell the task where that side listens, and rewrite the body to
    /// point the other side at the leg facing it, in the other side's family.
    fn apply(&self, h: &mut Handle, from: Side, sdp: &Sdp<'_>, is_answer: bool) -> Vec<u8> {
        let audio = &sdp.audio;
        if let Some(v6) = Self::is_v6(sdp) {
            match from {
                Side::Caller => h.a_v6 = v6,
                Side::Callee => h.b_v6 = v6,
            }
        }
        let _ = h.ctl.try_send(Ctl::Remote {
            side: from,
            rtp: audio.rtp_addr(),
            rtcp: audio.rtcp_addr(),
        });
        if from == Side::Callee {
            h.callee = Some(audio.clone());
        }
        if is_answer {
            h.answer_codec = Some(audio.first_g711().map(|(c, _)| c));
        }
        // The caller sends to leg A, so its peer's SDP advertises leg A; and vice versa.
        let (port, v6) = match from {
            Side::Caller => (h.b_port, h.b_v6),
            Side::Callee => (h.a_port, h.a_v6),
        };
        sdp.rewrite(self.ip_for(v6), port)
    }

    fn maybe_play(&self, h: &mut Handle) -> Result<(), MediaError> {
        let (Some(prompt), Some(answer)) = (h.connected.clone(), h.answer_codec) else {
            return Ok(());
        };
        if h.prompt_started {
            return Ok(());
        }
        h.prompt_started = true;
        let Some(codec) = answer else {
            self.stats.prompts_skipped.inc();
            return Err(MediaError::NoG711);
        };
        // Send with the number the callee itself uses for the codec (it may be dynamic).
        let pt = h
            .callee
            .as_ref()
            .and_then(|c| c.pt_for(codec))
            .unwrap_or(codec.static_pt());
        self.stats.prompts_started.inc();
        let _ = h.ctl.try_send(Ctl::Play { prompt, codec, pt });
        Ok(())
    }
}

/// Free port pairs, least recently used first (so a just-freed port is not handed out while
/// stray packets of its old call may still arrive).
struct PortPool {
    free: Mutex<VecDeque<u16>>,
    stats: Arc<MediaStats>,
}

impl PortPool {
    fn take(self: &Arc<Self>) -> Option<PortLease> {
        let base = self.free.lock().ok()?.pop_front()?;
        self.stats.ports_in_use.inc();
        self.stats.ports_in_use.inc();
        Some(PortLease {
            pool: self.clone(),
            base,
        })
    }
}

struct PortLease {
    pool: Arc<PortPool>,
    base: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut f) = self.pool.free.lock() {
            f.push_back(self.base);
        }
        self.pool.stats.ports_in_use.dec();
        self.pool.stats.ports_in_use.dec();
    }
}

/// One leg: RTP and RTCP sockets. Fields drop in order, so the sockets are closed before the
/// lease returns the ports to the pool.
struct Leg {
    port: u16,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    _lease: PortLease,
}

/// Where one party listens and where its media actually comes from.
#[derive(Default)]
struct Peer {
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
}

impl Peer {
    /// Symmetric RTP: the first source latches; afterwards only that source, or the address
    /// the party's SDP names (a re-INVITE may move it), is accepted.
    fn accept(&mut self, src: SocketAddr, rtcp: bool) -> bool {
        let (latched, sdp) = if rtcp {
            (&mut self.rtcp, self.sdp_rtcp)
        } else {
            (&mut self.rtp, self.sdp_rtp)
        };
        match *latched {
            Some(l) if l == src => true,
            Some(_) if sdp == Some(src) => {
                *latched = Some(src);
                true
            }
            Some(_) => false,
            None => {
                *latched = Some(src);
                true
            }
        }
    }

    fn target(&self, rtcp: bool) -> Option<SocketAddr> {
        if rtcp {
            self.rtcp.or(self.sdp_rtcp)
        } else {
            self.rtp.or(self.sdp_rtp)
        }
    }
}

/// Our RTP stream to one party: a prompt, then the other party's audio restamped into it.
///
/// Why restamp rather than let the other party's own SSRC appear after the prompt: the
/// listener's jitter buffer has locked onto the prompt's SSRC, sequence and timestamp; several
/// phones and gateways ignore or stall on a second SSRC or treat a jump as massive loss.
/// Restamping costs three stores per packet. RTCP is passed through unchanged (its reports name
/// the sender's own SSRC, which receivers treat as informational).
struct OutStream {
    ssrc: u32,
    next_seq: u16,
    next_ts: u32,
    last_sent: Instant,
    /// The other party's SSRC being restamped and its offsets.
    shift: Option<(u32, u16, u32)>,
}

impl OutStream {
    fn new(now: Instant) -> OutStream {
        OutStream {
            ssrc: fastrand::u32(..),
            next_seq: fastrand::u16(..),
            next_ts: fastrand::u32(..),
            last_sent: now,
            shift: None,
        }
    }

    /// Rewrite a relayed packet into this stream.
    fn restamp(&mut self, pkt: &mut [u8], now: Instant) {
        let (ssrc, seq, ts) = (rtp::ssrc(pkt), rtp::seq(pkt), rtp::timestamp(pkt));
        let mut first = false;
        let (seq_off, ts_off) = match self.shift {
            Some((s, so, to)) if s == ssrc => (so, to),
            _ => {
                // Continue our stream: next sequence number, timestamp advanced by the
                // wall-clock time since our last packet (at least one frame).
                let frames = (now.duration_since(self.last_sent).as_millis() / 20).max(1);
                let ts_at = self
                    .next_ts
                    .wrapping_add(FRAME as u32 * (frames as u32).saturating_sub(1));
                let so = self.next_seq.wrapping_sub(seq);
                let to = ts_at.wrapping_sub(ts);
                self.shift = Some((ssrc, so, to));
                first = true;
                (so, to)
            }
        };
        let (nseq, nts) = (seq.wrapping_add(seq_off), ts.wrapping_add(ts_off));
        rtp::restamp(pkt, nseq, nts, self.ssrc, first);
        // Only move forward (reordered packets keep their own place).
        if nseq.wrapping_sub(self.next_seq) < 0x8000 {
            self.next_seq = nseq.wrapping_add(1);
            self.next_ts = nts.wrapping_add(FRAME as u32);
            self.last_sent = now;
        }
    }
}

struct Playing {
    /// Who hears it: the callee after answer, the caller for early media.
    to: Side,
    prompt: Arc<Prompt>,
    codec: Codec,
    pt: u8,
    idx: usize,
    start: Instant,
    /// A frame of the other party to mix into the next prompt frame (when it is not held).
    mix: Option<[u8; FRAME]>,
}

/// What an early prompt waits for, and whom to tell how it went.
struct Gating {
    gate: Gate,
    /// The caller's telephone-event payload type, when it offered one.
    te: Option<u8>,
    dtmf: DtmfReceiver,
    /// Set once the prompt has played: the digit counts from then until this instant.
    deadline: Option<Instant>,
    done: Option<Done>,
}

struct Task {
    engine: Weak<Inner>,
    stats: Arc<MediaStats>,
    call_id: String,
    id: u64,
    hold_caller: bool,
    idle: Duration,
    setup: Duration,
    start_wait: Duration,
    /// The legs' sockets are IPv6 (dual-stack): an IPv4 party is sent to as a mapped address.
    v6: bool,
}

enum Ev {
    Ctl(Ctl),
    Tick,
    Idle,
    Pkt(u8, std::io::Result<(usize, SocketAddr)>),
}

/// Index of a side in the per-side arrays.
fn ix(s: Side) -> usize {
    match s {
        Side::Caller => 0,
        Side::Callee => 1,
    }
}

fn other(s: Side) -> Side {
    match s {
        Side::Caller => Side::Callee,
        Side::Callee => Side::Caller,
    }
}

struct State {
    /// The caller and the callee, by [`ix`].
    peers: [Peer; 2],
    answered: bool,
    last_activity: Instant,
    play: Option<Playing>,
    /// Our stream towards each party, once a prompt has played to it.
    out: [Option<OutStream>; 2],
    /// The listener spoke first: play the waiting prompt now.
    start_now: bool,
    gating: Option<Gating>,
}

impl State {
    /// When the timer must fire next: the prompt's next frame, else the digit's deadline.
    fn timed(&self) -> bool {
        self.play.is_some() || self.gating.as_ref().is_some_and(|g| g.deadline.is_some())
    }
}

impl Task {
    async fn run(self, a: Leg, b: Leg, mut ctl: mpsc::Receiver<Ctl>) {
        let mut st = State {
            peers: [Peer::default(), Peer::default()],
            answered: false,
            last_activity: Instant::now(),
            play: None,
            out: [None, None],
            start_now: false,
            gating: None,
        };
        let legs = [&a, &b];
        let mut tick: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let period = (self.idle.min(self.setup) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut idle = tokio::time::interval(period);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut ba, mut bb, mut bc, mut bd) = ([0u8; 2048], [0u8; 2048], [0u8; 2048], [0u8; 2048]);
        // Unbiased select: a socket that is always readable (a flood) cannot starve the other
        // leg, the prompt clock or the idle timer. Control messages are drained before every
        // packet so an SDP change is in effect for media that follows it.
        let idled = loop {
            let ev = tokio::select! {
                c = ctl.recv() => match c {
                    None => break false,
                    Some(c) => Ev::Ctl(c),
                },
                _ = &mut tick, if st.timed() => Ev::Tick,
                _ = idle.tick() => Ev::Idle,
                r = a.rtp.recv_from(&mut ba) => Ev::Pkt(0, r),
                r = b.rtp.recv_from(&mut bb) => Ev::Pkt(1, r),
                r = a.rtcp.recv_from(&mut bc) => Ev::Pkt(2, r),
                r = b.rtcp.recv_from(&mut bd) => Ev::Pkt(3, r),
            };
            match ev {
                Ev::Ctl(c) => self.control(&mut st, c, &mut tick),
                Ev::Tick => self.on_tick(&mut st, legs, &mut tick),
                Ev::Idle => {
                    let limit = if st.answered { self.idle } else { self.setup };
                    if st.last_activity.elapsed() >= limit {
                        break true;
                    }
                }
                Ev::Pkt(_, Err(_)) => {}
                Ev::Pkt(which, Ok((n, src))) => {
                    // A dual-stack socket reports an IPv4 party as a mapped address; the SDP
                    // named it as IPv4.
                    let src = SocketAddr::new(src.ip().to_canonical(), src.port());
                    while let Ok(c) = ctl.try_recv() {
                        self.control(&mut st, c, &mut tick);
                    }
                    let (from, pkt, rtcp) = match which {
                        0 => (Side::Caller, &mut ba[..n], false),
                        1 => (Side::Callee, &mut bb[..n], false),
                        2 => (Side::Caller, &mut bc[..n], true),
                        _ => (Side::Callee, &mut bd[..n], true),
                    };
                    self.on_packet(&mut st, from, pkt, src, rtcp, legs);
                    if st.start_now {
                        st.start_now = false;
                        tick.as_mut().reset(Instant::now());
                    }
                }
            }
        };
        drop((a, b));
        self.stats.sessions_active.dec();
        if let Some(engine) = self.engine.upgrade() {
            engine.live.fetch_sub(1, Ordering::AcqRel);
            if idled {
                self.stats.released_idle.inc();
                engine
                    .sessions
                    .remove_if(&self.call_id, |_, h| h.id == self.id);
                tracing::debug!(call_id = %self.call_id, "media session idled out");
            }
        }
    }

    fn control(&self, st: &mut State, c: Ctl, tick: &mut Pin<Box<Sleep>>) {
        st.last_activity = Instant::now();
        match c {
            Ctl::Remote { side, rtp, rtcp } => {
                let p = &mut st.peers[ix(side)];
                p.sdp_rtp = rtp;
                p.sdp_rtcp = rtcp;
            }
            Ctl::Answered => st.answered = true,
            Ctl::Play { prompt, codec, pt } => {
                st.answered = true;
                self.start_prompt(st, Side::Callee, (prompt, codec, pt), tick);
            }
            Ctl::Early {
                prompt,
                codec,
                pt,
                te,
                gate,
                done,
            } => {
                st.gating = Some(Gating {
                    gate,
                    te,
                    dtmf: DtmfReceiver::new(),
                    deadline: None,
                    done: Some(done),
                });
                self.start_prompt(st, Side::Caller, (prompt, codec, pt), tick);
            }
        }
    }

    /// Start playing to `to` when its media is known to flow (its first RTP proves the path
    /// is open and, behind NAT, gives the address to send to); wait at most `start_wait` for
    /// that.
    fn start_prompt(
        &self,
        st: &mut State,
        to: Side,
        (prompt, codec, pt): (Arc<Prompt>, Codec, u8),
        tick: &mut Pin<Box<Sleep>>,
    ) {
        let now = Instant::now();
        st.out[ix(to)] = Some(OutStream::new(now));
        let start = if st.peers[ix(to)].rtp.is_some() {
            now
        } else {
            now + self.start_wait
        };
        st.play = Some(Playing {
            to,
            prompt,
            codec,
            pt,
            idx: 0,
            start,
            mix: None,
        });
        tick.as_mut().reset(start);
    }

    fn on_tick(&self, st: &mut State, legs: [&Leg; 2], tick: &mut Pin<Box<Sleep>>) {
        if st.play.is_some() {
            return self.play_due(st, legs, tick);
        }
        let expired = st
            .gating
            .as_ref()
            .and_then(|g| g.deadline)
            .is_some_and(|d| d <= Instant::now());
        if expired {
            self.stats.unconfirmed.inc();
            self.finish(st, Heard::TimedOut);
        }
    }

    /// The early prompt's outcome is known: tell it once, and stop listening for digits.
    fn finish(&self, st: &mut State, heard: Heard) {
        if let Some(done) = st.gating.take().and_then(|mut g| g.done.take()) {
            tracing::debug!(call_id = %self.call_id, ?heard, "early prompt done");
            done(heard);
        }
    }

    /// The prompt has played: an early one now waits for its digit, or is done.
    fn played(&self, st: &mut State, tick: &mut Pin<Box<Sleep>>) {
        self.stats.prompts_played.inc();
        let wait = match st.gating.as_ref().map(|g| g.gate) {
            None => return,
            Some(Gate::Hear) => return self.finish(st, Heard::Played),
            Some(Gate::Press { wait, .. }) => wait,
        };
        let deadline = Instant::now() + wait;
        if let Some(g) = st.gating.as_mut() {
            g.deadline = Some(deadline);
        }
        tick.as_mut().reset(deadline);
    }

    /// Send every prompt frame that is due; re-arm the timer for the next one.
    fn play_due(&self, st: &mut State, legs: [&Leg; 2], tick: &mut Pin<Box<Sleep>>) {
        let now = Instant::now();
        let Some(to) = st.play.as_ref().map(|p| p.to) else {
            return;
        };
        let target = st.peers[ix(to)].target(false);
        let (Some(p), Some(out)) = (st.play.as_mut(), st.out[ix(to)].as_mut()) else {
            return;
        };
        let frames = p.prompt.frames(p.codec);
        loop {
            if p.idx >= frames.len() {
                st.play = None;
                return self.played(st, tick);
            }
            let due = p.start + PTIME * p.idx as u32;
            if due > now {
                tick.as_mut().reset(due);
                return;
            }
            let mut pkt = [0u8; rtp::HEADER + FRAME];
            pkt[..rtp::HEADER].copy_from_slice(&rtp::header(
                p.pt,
                p.idx == 0,
                out.next_seq,
                out.next_ts,
                out.ssrc,
            ));
            let body = &mut pkt[rtp::HEADER..];
            body.copy_from_slice(&frames[p.idx]);
            if let Some(m) = p.mix.take() {
                for (o, c) in body.iter_mut().zip(m) {
                    let s = p.codec.decode(*o) as i32 + p.codec.decode(c) as i32;
                    *o = p
                        .codec
                        .encode(s.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
                }
            }
            if let Some(t) = target {
                if legs[ix(to)].rtp.try_send_to(&pkt, self.wire(t)).is_err() {
                    self.stats.dropped_other.inc();
                }
            }
            out.next_seq = out.next_seq.wrapping_add(1);
            out.next_ts = out.next_ts.wrapping_add(FRAME as u32);
            out.last_sent = now;
            p.idx += 1;
        }
    }

    /// A packet from one party: latch, count, look for the caller's digit, then relay it to the
    /// other party (held or mixed while a prompt plays to that party, restamped into our stream
    /// once one has).
    fn on_packet(
        &self,
        st: &mut State,
        from: Side,
        pkt: &mut [u8],
        src: SocketAddr,
        rtcp: bool,
        legs: [&Leg; 2],
    ) {
        let to = other(from);
        if !st.peers[ix(from)].accept(src, rtcp) {
            self.stats.dropped_unrelated.inc();
            return;
        }
        let now = Instant::now();
        st.last_activity = now;
        let is_rtcp = rtcp || rtp::is_rtcp(pkt);
        if !is_rtcp {
            // The listener's first packet starts a prompt waiting for it.
            if let Some(p) = st.play.as_mut().filter(|p| p.to == from) {
                if p.idx == 0 && p.start > now {
                    p.start = now;
                    st.start_now = true;
                }
            }
        }
        if is_rtcp {
            // RTCP on its own port goes to the other party's RTCP address; muxed RTCP stays
            // muxed.
            let (sock, t) = if rtcp {
                (&legs[ix(to)].rtcp, st.peers[ix(to)].target(true))
            } else {
                (&legs[ix(to)].rtp, st.peers[ix(to)].target(false))
            };
            self.send(sock, pkt, t, &self.stats.rtcp_relayed);
            return;
        }
        if !rtp::is_rtp_like(pkt) {
            self.stats.dropped_other.inc();
            return;
        }
        if from == Side::Caller {
            self.listen_for_digit(st, pkt);
        }
        if let Some(p) = st.play.as_mut().filter(|p| p.to == to) {
            if !self.hold_caller && rtp::payload_type(pkt) == p.pt {
                if let Ok(f) = <[u8; FRAME]>::try_from(rtp::payload(pkt)) {
                    p.mix = Some(f);
                }
            }
            self.stats.dropped_held.inc();
            return;
        }
        if let Some(out) = st.out[ix(to)].as_mut() {
            out.restamp(pkt, now);
        }
        self.send(
            &legs[ix(to)].rtp,
            pkt,
            st.peers[ix(to)].target(false),
            &self.stats.rtp_relayed,
        );
    }

    /// A telephone-event of the caller while an early prompt asks for a digit: the right digit
    /// after the prompt has played confirms. One pressed during the prompt does not count, so
    /// the warning is heard in full.
    fn listen_for_digit(&self, st: &mut State, pkt: &[u8]) {
        let Some(g) = st.gating.as_mut() else {
            return;
        };
        let Gate::Press { digit, .. } = g.gate else {
            return;
        };
        if g.te != Some(rtp::payload_type(pkt)) {
            return;
        }
        let pressed = g.dtmf.push(pkt);
        if pressed == Some(digit) && g.deadline.is_some() {
            self.stats.confirmed.inc();
            self.finish(st, Heard::Confirmed);
        }
    }

    /// `to` as our sockets' family takes it.
    fn wire(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            to => to,
        }
    }

    /// Non-blocking send: a full socket buffer drops the packet (late audio is useless).
    fn send(
        &self,
        sock: &UdpSocket,
        pkt: &[u8],
        to: Option<SocketAddr>,
        ok: &crate::metrics::Counter,
    ) {
        match to.map(|t| sock.try_send_to(pkt, self.wire(t))) {
            Some(Ok(_)) => ok.inc(),
            _ => self.stats.dropped_other.inc(),
        }
    }
}

impl Future for Closing {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
