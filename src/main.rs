//! The `scamguard` binary: a thin CLI over the library.
//!
//! `run` starts the agent, `check` prints the verdict for one caller with the same decision
//! function the proxy uses, `validate` checks a config and every list file. Every failure is a
//! message and a non-zero exit status, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scamguard::app::config::{Config, Overrides};
use scamguard::lists;

#[derive(Parser)]
#[command(
    name = "scamguard",
    version,
    about = "Scam-call screening agent for SIP networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// SIP listen address (host:port), replacing the config's.
        #[arg(long)]
        listen: Option<String>,
        /// Where screened calls are forwarded (host:port), replacing the config's.
        #[arg(long)]
        next_hop: Option<String>,
        /// Admin API listen address (host:port), replacing the config's.
        #[arg(long)]
        api: Option<String>,
        /// Lists directory, replacing lists.dir.
        #[arg(long)]
        lists: Option<PathBuf>,
        /// Data directory of the durable store, replacing store.data_dir.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Print the verdict for one caller as one JSON line.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// The caller number as the network would carry it.
        #[arg(long)]
        caller: String,
        /// The number called.
        #[arg(long, default_value = "")]
        callee: String,
        /// The caller's display name.
        #[arg(long)]
        display: Option<String>,
        /// Treat the caller as having withheld their identity.
        #[arg(long)]
        anonymous: bool,
        /// Lists directory, replacing lists.dir.
        #[arg(long)]
        lists: Option<PathBuf>,
    },
    /// Work on the store's lists directly: add, remove, import, export, stats.
    Lists {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: lists::cli::ListsCmd,
    },
    /// Signed feeds: make a publisher key, show the subscribed feeds' state.
    Feeds {
        #[command(subcommand)]
        cmd: scamguard::lists::feeds::FeedsCmd,
    },
    /// Check the config and every list file; print each problem as file:line: message.
    Validate {
        #[arg(long)]
        config: PathBuf,
        /// Lists directory, replacing lists.dir.
        #[arg(long)]
        lists: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            listen,
            next_hop,
            api,
            lists,
            data,
        } => {
            let overrides = Overrides {
                listen,
                next_hop,
                api,
                lists,
                data,
            };
            let c = match load(&config, &overrides, Config::validate_for_run) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match scamguard::app::run(c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scamguard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check {
            config,
            caller,
            callee,
            display,
            anonymous,
            lists,
        } => check(
            &config,
            &caller,
            &callee,
            display.as_deref(),
            anonymous,
            lists,
        ),
        Command::Validate { config, lists } => validate(&config, lists),
        Command::Feeds { cmd } => feeds(cmd),
        Command::Lists { config, cmd } => {
            let Some(config) = config else {
                eprintln!("scamguard lists: --config FILE is required");
                return ExitCode::FAILURE;
            };
            let c = match load(&config, &Overrides::default(), Config::validate) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match lists::cli::run(&cmd, &c.store, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scamguard lists: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn feeds(cmd: scamguard::lists::feeds::FeedsCmd) -> ExitCode {
    use scamguard::lists::feeds::{keygen, read_status, write_status, FeedsCmd};
    let r = match cmd {
        FeedsCmd::Keygen { out } => keygen(&out).map(|(k, p)| {
            println!("private key: {} (mode 0600)", k.display());
            println!("public key:  {}", p.display());
        }),
        FeedsCmd::Status { config, data } => {
            let dir = match (config, data) {
                (_, Some(d)) => d,
                (Some(config), None) => {
                    match load(&config, &Overrides::default(), Config::validate) {
                        Ok(c) => c.store.data_dir,
                        Err(code) => return code,
                    }
                }
                // clap requires one of them.
                (None, None) => return ExitCode::FAILURE,
            };
            read_status(&dir)
                .and_then(|s| write_status(&s, &mut std::io::stdout()).map_err(|e| e.to_string()))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scamguard feeds: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Load a config, apply the command line over it and validate the result with `checks`, once:
/// every problem is printed and the exit code says there were some.
fn load(
    path: &std::path::Path,
    overrides: &Overrides,
    checks: fn(&Config) -> Vec<String>,
) -> Result<Config, ExitCode> {
    let mut c = Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })?;
    c.apply(overrides).map_err(|e| {
        eprintln!("scamguard: {e}");
        ExitCode::FAILURE
    })?;
    let problems = checks(&c);
    if !problems.is_empty() {
        for p in problems {
            eprintln!("{}: {p}", path.display());
        }
        return Err(ExitCode::FAILURE);
    }
    Ok(c)
}

fn check(
    path: &std::path::Path,
    caller: &str,
    callee: &str,
    display: Option<&str>,
    anonymous: bool,
    lists: Option<PathBuf>,
) -> ExitCode {
    let overrides = Overrides {
        lists,
        ..Default::default()
    };
    let c = match load(path, &overrides, Config::validate) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let verdict = match scamguard::app::check(&c, caller, callee, display, anonymous) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("scamguard: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", verdict.to_json());
    ExitCode::SUCCESS
}

fn validate(path: &std::path::Path, lists_dir: Option<PathBuf>) -> ExitCode {
    let mut c = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = c.apply(&Overrides {
        lists: lists_dir,
        ..Default::default()
    }) {
        eprintln!("scamguard: {e}");
        return ExitCode::FAILURE;
    }
    let mut problems: Vec<String> = c
        .validate()
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect();
    let mut summary = Vec::new();
    let mut total = 0usize;
    match lists::list_files(&c.lists.dir) {
        Err(e) => problems.push(e.to_string()),
        Ok(files) => {
            for f in files {
                match lists::load_file(&f, c.lists.max_file_bytes) {
                    Ok(l) => {
                        total += l.entries;
                        summary.push(format!("{} {}", l.name, l.entries));
                    }
                    Err(errs) => problems.extend(errs.iter().map(|e| e.to_string())),
                }
            }
        }
    }
    if total > c.lists.max_entries {
        problems.push(format!(
            "{}: {total} entries in all lists; expected at most lists.max_entries = {}",
            c.lists.dir.display(),
            c.lists.max_entries
        ));
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("{p}");
        }
        eprintln!("scamguard: {} problem(s)", problems.len());
        return ExitCode::FAILURE;
    }
    println!(
        "OK: {} valid; {} lists in {} with {total} entries ({})",
        path.display(),
        summary.len(),
        c.lists.dir.display(),
        summary.join(", ")
    );
    ExitCode::SUCCESS
}
