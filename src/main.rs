use clap::Parser;
use std::process::ExitCode;
use warehouse_stock::cli::{self, Cli, Command};
use warehouse_stock::config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    // A missing .env is normal; its values never override the environment.
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("warehouse-stock: {e}");
            return ExitCode::from(2);
        }
    };
    match cli::run(args.command.unwrap_or(Command::Serve), settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warehouse-stock: {e:#}");
            ExitCode::FAILURE
        }
    }
}
