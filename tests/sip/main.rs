//! SIP over real sockets: the bare proxy with the tests' hook (`sip_proxy`), the RFC 4475 torture
//! messages and the generated malformed corpus (`sip_corpus`), SIPp through the bare proxy
//! (`sip_sipp`) and through the real `scamguard` binary (`sipp`), the whole agent end to end
//! (`agent_sip`), host names through a real DNS server (`dns_sip`), what the edge refuses to an
//! attacker or a careless peer (`edge_sip`), how it holds connections, calls and scanners
//! (`edge_conn`), how it shares itself out under a flood (`flood_sip`), SIP over TLS
//! (`tls_sip`), and its HEP3 copies for a Homer collector (`hep_sip`). One test binary: its
//! tests run in parallel threads of one process, each on its own sockets (port 0, or ports
//! checked free just before use).

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/malformed.rs"]
mod malformed;

mod agent_sip;
mod dns_sip;
mod edge_conn;
mod edge_sip;
mod flood_sip;
mod hep_sip;
mod ipv6_sip;
mod sip_corpus;
mod sip_proxy;
mod sip_sipp;
mod sipp;
mod tls_sip;
