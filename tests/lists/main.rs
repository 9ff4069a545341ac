//! The lists' store and feeds across processes: durability of the store under `kill -9`
//! (`crash_store`, whose writer is this binary run again as a child) and two whole agents sharing
//! a signed feed (`feeds_two_agents`). One test binary: its tests run in parallel threads of one
//! process, each with its own temp dirs.

#[path = "../support/mod.rs"]
mod support;

mod crash_store;
mod feeds_two_agents;
