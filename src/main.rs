use std::process::ExitCode;

use clap::Parser;
use postern::Roles;
use postern::cli::{Cli, Command};
use postern_config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    postern::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,tokio_cron_scheduler=warn,sea_orm_migration=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Serve => run(settings, Roles::ALL, true).await,
        Command::Smtp => {
            run(
                settings,
                Roles {
                    smtp: true,
                    api: false,
                    worker: false,
                },
                false,
            )
            .await
        }
        Command::Api => {
            run(
                settings,
                Roles {
                    smtp: false,
                    api: true,
                    worker: false,
                },
                false,
            )
            .await
        }
        Command::Worker { action: None } => {
            run(
                settings,
                Roles {
                    smtp: false,
                    api: false,
                    worker: true,
                },
                false,
            )
            .await
        }
        Command::Migrate => postern::open_database(&settings, true)
            .await
            .map(|_| println!("database is up to date")),
        admin => postern::cli::run_admin(&settings, admin)
            .await
            .map(|out| print!("{out}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, roles: Roles, migrate: bool) -> anyhow::Result<()> {
    let running = postern::start(settings, roles, migrate).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
