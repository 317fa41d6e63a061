use clap::Parser;
use std::process::ExitCode;
use warehouse_stock::cli::{self, Cli, Command};
use warehouse_stock::config::Settings;
use warehouse_stock::memory;

fn main() -> ExitCode {
    // Before the runtime starts its threads (see `memory`).
    memory::configure();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("warehouse-stock: failed to start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
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
