//! `sixfold-bench`: the load generator's command line (see docs/bench.md).

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{BaselineArgs, Cli, Command, RunArgs, SoakArgs};
use sixfold_bench::baseline;
use sixfold_bench::report::summary_table;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Some transfer failed or did not verify (the report says which).
const EXIT_ERRORS: u8 = 1;
/// The run could not start or its report could not be written.
const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    // The bench's client moves as many bytes as the gateway: the same allocator settings.
    sixfold_process::keep_freed_memory();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Soak(args) => soak(&args),
        Command::Baseline(args) => baseline_only(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sixfold-bench: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let report = sixfold_bench::run_blocking(&config)?;
    finish(
        &summary_table(&report),
        &report,
        args.report.as_deref(),
        report.is_ok(),
    )
}

/// Prints the summary, writes the JSON report when asked, and picks the exit status.
fn finish<T: serde::Serialize>(
    summary: &str,
    report: &T,
    path: Option<&Path>,
    ok: bool,
) -> anyhow::Result<ExitCode> {
    print!("{summary}");
    if let Some(path) = path {
        write_json(path, report)?;
        println!("report written to {}", path.display());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERRORS)
    })
}

fn soak(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let report = sixfold_bench::soak_blocking(&config)?;
    let sizes = sixfold_bench::soak::sizes::HumanDist(&config.sizes).to_string();
    finish(
        &sixfold_bench::soak::report::soak_summary(&report, &sizes),
        &report,
        args.report.as_deref(),
        report.is_ok(),
    )
}

fn baseline_only(args: &BaselineArgs) -> anyhow::Result<ExitCode> {
    let cfg = sixfold_bench::BaselineConfig {
        dir: args.dir.clone(),
        size: args.size,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = rt.block_on(baseline::measure(cfg));
    let fs = report.filesystem.as_deref().unwrap_or("unknown fs");
    match (&report.write, &report.read) {
        (Some(w), Some(r)) => println!(
            "{} ({fs}), O_DIRECT io_uring, 1 MiB blocks, QD{}, {} MiB each way: write {:.1} MB/s, read {:.1} MB/s",
            report.dir,
            report.queue_depth,
            w.bytes >> 20,
            w.mb_per_s,
            r.mb_per_s
        ),
        _ => println!(
            "{} ({fs}): NOT MEASURED: {}",
            report.dir,
            report.error.as_deref().unwrap_or("unknown error")
        ),
    }
    if let Some(w) = &report.warning {
        println!("warning: {w}");
    }
    if let Some(path) = &args.report {
        write_json(path, &report)?;
    }
    Ok(if report.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERRORS)
    })
}
