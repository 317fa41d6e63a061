//! The command line: `serve` (the default) and `migrate`.

use crate::config::Settings;
use crate::startup::{Application, connect_database, shutdown_signal};
use crate::telemetry;
use clap::{Parser, Subcommand};

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
    }
}
