//! The admin API and the command line: the API over HTTP (`api_admin`), HTTPS (`api_tls`) and
//! without a socket (`api_route`), reports through the API (`reports_api`), disputes through the
//! redress form and the API (`redress`), the web console's access rules (`console_http`) and the
//! `scamguard` binary run as an operator would (`cli`). One test binary: its tests run in parallel threads of
//! one process, each with its own temp dir and ports.

#[path = "../support/mod.rs"]
mod support;

mod api_admin;
mod api_route;
mod api_tls;
mod cli;
mod console_http;
mod redress;
mod reports_api;
