//! The command line: `serve` (the default) and `migrate`.

use crate::config::Settings;
use crate::produce::generator::GeneratorConfig;
use crate::produce::{self, ProduceOptions, Source};
use crate::startup::{Application, connect_database, shutdown_signal};
use crate::telemetry;
use clap::{ArgGroup, Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "warehouse-stock",
    version,
    about = "Exact warehouse stock from movement events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the database if needed, apply migrations, and serve HTTP (and
    /// consume Kafka with APP_MODE=kafka). The default command.
    Serve,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Recompute every stock figure and movement from the audit log and
    /// compare them with the tables; exits 1 with the differences if any.
    Verify,
    /// Send movement events to the Kafka topic: JSON lines from a file or
    /// stdin, or a generated stream whose final stock is known.
    Produce(ProduceArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["file", "count"])))]
pub struct ProduceArgs {
    /// JSON lines, one structured CloudEvent per line (sent as they are,
    /// valid or not); `-` reads stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Generate this many records instead.
    #[arg(long)]
    pub count: Option<usize>,
    /// Warehouses in the generated stream.
    #[arg(long, default_value_t = 50)]
    pub warehouses: usize,
    /// Products in the generated stream.
    #[arg(long, default_value_t = 2000)]
    pub products: usize,
    /// Share of generated events that are departures.
    #[arg(long, default_value_t = 0.25, value_parser = share)]
    pub departure_share: f64,
    /// Share of generated records that re-send an earlier record.
    #[arg(long, default_value_t = 0.05, value_parser = share)]
    pub duplicate_share: f64,
    /// Share of generated records that are counts and adjustments (0 keeps
    /// the stream of movements only, as the bench compares builds on).
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub correction_share: f64,
    /// Seed of the generated stream: the same seed gives the same stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Topic to send to (default: KAFKA_TOPIC).
    #[arg(long)]
    pub topic: Option<String>,
    /// CloudEvents binary mode (ce_* headers, value = data).
    #[arg(long)]
    pub binary: bool,
    /// Write the generated stream's expected final stock to this JSON file.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

fn share(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got {raw:?}")),
    }
}

/// Runs a parsed command with validated settings.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    telemetry::init(&settings.log_level, settings.log_format);
    match command {
        Command::Serve => {
            tracing::info!(config = %settings.describe(), "starting");
            let app = Application::build(&settings).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate => {
            connect_database(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Verify => {
            let pool = connect_database(&settings).await?;
            let diff = crate::ledger::verify::verify(&pool, 1000).await?;
            if diff.is_empty() {
                println!(
                    "consistent: stock matches the audit log, and every movement's halves agree"
                );
                Ok(())
            } else {
                for line in &diff {
                    println!("{line}");
                }
                anyhow::bail!(
                    "{} differences between the tables and the audit log",
                    diff.len()
                )
            }
        }
        Command::Produce(args) => {
            let source = match (args.file, args.count) {
                (Some(file), _) => Source::Lines(file),
                (None, Some(count)) => Source::Generated(GeneratorConfig {
                    count,
                    warehouses: args.warehouses,
                    products: args.products,
                    departure_share: args.departure_share,
                    duplicate_share: args.duplicate_share,
                    correction_share: args.correction_share,
                    seed: args.seed,
                }),
                (None, None) => unreachable!("clap requires --file or --count"),
            };
            let options = ProduceOptions {
                topic: args.topic.unwrap_or_else(|| settings.kafka.topic.clone()),
                source,
                binary: args.binary,
                expect: args.expect,
                quiet: args.quiet,
            };
            let produced = produce::produce(&settings.kafka, options).await?;
            println!(
                "produced {} records ({} duplicates)",
                produced.sent, produced.duplicates
            );
            Ok(())
        }
    }
}
