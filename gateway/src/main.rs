//! `sixfold-gateway`: the HTTP gateway of a sixfold cluster.
//!
//! - `sixfold-gateway serve --data-dir DIR [--listen ADDR] [--config FILE] ...`
//! - `sixfold-gateway dev ...`: a complete local cluster in one command
//! - `sixfold-gateway certs ...`: the cluster PKI
//! - `sixfold-gateway admin ...`: the admin API of a running gateway (access keys, backups)

mod cli;
mod readiness;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sixfold_gateway::config::{GatewayConfig, LogFormat, ServeArgs};
use sixfold_gateway::server;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "sixfold-gateway",
    version,
    about = "sixfold gateway: HTTP API over a cluster of storage nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (metadata and cluster certificates under the data dir).
    Serve(Box<ServeArgs>),
    /// Run a complete local cluster: the gateway and N storage nodes on loopback.
    Dev(cli::dev::DevArgs),
    /// Manage the cluster certificates and token.
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Administer a running gateway over HTTP (access keys, metadata backups), with an admin
    /// token.
    Admin(cli::admin::AdminArgs),
}

/// Logs go to stderr, as text or JSON lines; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: the journal and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (stderr on a full disk) is dropped: the default
        // reports it with eprintln!, which panics when stderr fails.
        .log_internal_errors(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: logging not initialised: {e}");
    }
}

/// The runtime of `serve` and `dev`, with `worker_threads` threads (the admin commands pass
/// `None`: tokio's one per CPU).
pub(crate) fn runtime(worker_threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = GatewayConfig::resolve(args.as_ref())?;
            init_logging(config.log_format);
            runtime(Some(config.worker_threads))?.block_on(serve(&config))?;
            Ok(())
        }
        Command::Dev(args) => cli::dev::run(args),
        Command::Certs(args) => cli::certs::run(args),
        Command::Admin(args) => cli::admin::run(args),
    }
}

/// `serve` with systemd notifications: `READY=1` once `server::start` returned (metadata open,
/// HTTP port bound), `STOPPING=1` on SIGTERM/SIGINT, keep-alives while serving.
async fn serve(config: &GatewayConfig) -> Result<(), server::ServeError> {
    let stop = server::shutdown_signal();
    let running = server::start(config).await?;
    readiness::ready();
    let watchdog = readiness::spawn_watchdog();
    stop.await;
    readiness::stopping();
    tracing::info!("shutting down");
    let stopped = running.shutdown().await;
    if let Some(task) = watchdog {
        task.abort();
    }
    stopped
}

fn main() -> ExitCode {
    // Before the runtime's threads start allocating.
    sixfold_process::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixfold-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "sixfold-gateway",
            "serve",
            "--data-dir",
            "/d",
            "--listen",
            "0.0.0.0:9000",
            "--max-file-size",
            "5GiB",
            "--session-ttl",
            "30m",
            "--mtu",
            "auto",
            "--log-format",
            "json",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let config = GatewayConfig::resolve(args.as_ref()).expect("config");
        assert_eq!(config.max_file_size, 5 << 30);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(
            Cli::try_parse_from(["sixfold-gateway", "serve", "--max-file-size", "lots"]).is_err()
        );
    }

    #[test]
    fn admin_flags_parse() {
        let cli = Cli::try_parse_from([
            "sixfold-gateway",
            "admin",
            "keys",
            "create",
            "--scope",
            "write",
            "--name",
            "ci",
            "--gateway",
            "http://127.0.0.1:9",
            "--token-file",
            "/t",
        ])
        .expect("parse");
        let Command::Admin(args) = cli.command else {
            panic!("not admin");
        };
        assert_eq!(args.gateway, "http://127.0.0.1:9");
        assert_eq!(args.token_file.as_deref(), Some(std::path::Path::new("/t")));
        assert!(matches!(
            args.command,
            cli::admin::AdminCommand::Keys(cli::admin::KeysCommand::Create {
                scope: sixfold_gateway::auth::Scope::Write,
                ..
            })
        ));
        for bad in [
            &[
                "sixfold-gateway",
                "admin",
                "keys",
                "create",
                "--scope",
                "root",
                "--name",
                "x",
            ][..],
            &["sixfold-gateway", "admin", "keys", "revoke"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
