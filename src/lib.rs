//! The `postern` program: assembles gateway, API and worker into one process (or one role per
//! process) and holds the admin CLI. Tests drive the same functions the binary calls.

pub mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use postern_config::Settings;
use postern_domain::Context;
use postern_domain::outbound::Outbound;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopping process waits for the deliveries under way.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub smtp: bool,
    pub api: bool,
    pub worker: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        smtp: true,
        api: true,
        worker: true,
    };
}

/// A started service; `stop` shuts it down gracefully.
pub struct Running {
    pub smtp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub ctx: Context,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.ctx.shutdown(SHUTDOWN_GRACE).await;
    }

    /// Resolves when a stop was requested (used by `main` to wait on signals or tasks).
    pub async fn wait(&mut self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// rustls panics if two crypto providers are compiled in and none is chosen: choose one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Opens (and with `migrate`, creates or upgrades) the database.
pub async fn open_database(
    settings: &Settings,
    migrate: bool,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let open = || async {
        postern_domain::db::connect(settings)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    postern_config::redact_url(&settings.database.url)
                )
            })
    };
    if migrate {
        // Migrate on a pool of its own and close it: SQLite connections that loaded the schema
        // before a migration can keep a stale copy of it.
        let db = open().await?;
        postern_domain::db::migrate(&db)
            .await
            .context("database migration failed")?;
        db.close()
            .await
            .context("closing the migration connection")?;
    }
    let db = open().await?;
    Ok(db)
}

/// A context for one-off commands (a job run by hand): no listener, no worker loop.
pub async fn context(settings: &Settings) -> anyhow::Result<Context> {
    install_crypto_provider();
    let settings = Arc::new(settings.clone());
    let db = open_database(&settings, true).await?;
    let outbound = Outbound::from_settings(&settings)
        .map_err(|e| anyhow::anyhow!("outbound transport: {e}"))?;
    let instance = format!("cli-{}", std::process::id());
    Context::start(db, settings, outbound, instance)
        .await
        .context("cannot prepare DKIM keys and secrets")
}

/// Starts the given roles. Listeners bind before this returns, so port 0 works.
pub async fn start(settings: Settings, roles: Roles, migrate: bool) -> anyhow::Result<Running> {
    install_crypto_provider();
    let settings = Arc::new(settings);
    let db = open_database(&settings, migrate).await?;
    let outbound = Outbound::from_settings(&settings)
        .map_err(|e| anyhow::anyhow!("outbound transport: {e}"))?;
    let instance = instance_name(&settings, roles)?;
    let ctx = Context::start(db, settings.clone(), outbound, instance)
        .await
        .context("cannot prepare DKIM keys and secrets")?;
    let (stop, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let stopped = |stop: &watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut smtp_addr = None;
    if roles.smtp {
        let tls = postern_smtp_gateway::load_or_create_tls(
            &tls_path(&settings, settings.smtp.tls_cert.as_ref(), "cert.pem"),
            &tls_path(&settings, settings.smtp.tls_key.as_ref(), "key.pem"),
            &settings.mail.hostname,
        )
        .context("cannot load or create the STARTTLS certificate")?;
        let listener = tokio::net::TcpListener::bind(settings.smtp.listen)
            .await
            .with_context(|| format!("cannot listen for SMTP on {}", settings.smtp.listen))?;
        smtp_addr = Some(listener.local_addr()?);
        let config = Arc::new(postern_smtp_gateway::GatewayConfig::from_settings(
            &settings,
        ));
        let backend = Arc::new(postern_smtp_gateway::DomainBackend::new(ctx.clone()));
        let shutdown = stopped(&stop);
        tasks.push(tokio::spawn(async move {
            postern_smtp_gateway::serve(listener, config, Some(tls), backend, shutdown).await;
        }));
        tracing::info!(addr = ?smtp_addr, "SMTP gateway listening");
    }

    let mut http_addr = None;
    if roles.api {
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", settings.http.listen))?;
        http_addr = Some(listener.local_addr()?);
        let state = postern_api::AppState::new(ctx.clone())
            .await
            .context("cannot load the API secrets")?;
        let shutdown = stopped(&stop);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = postern_api::serve(listener, state, shutdown).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(addr = ?http_addr, "HTTP API listening");
    }

    if roles.worker {
        let ctx = ctx.clone();
        let shutdown = stopped(&stop);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = postern_worker::run(ctx, shutdown).await {
                tracing::error!(error = %e, "worker stopped");
            }
        }));
    }

    Ok(Running {
        smtp_addr,
        http_addr,
        ctx,
        stop,
        tasks,
    })
}

fn tls_path(settings: &Settings, configured: Option<&PathBuf>, name: &str) -> PathBuf {
    configured
        .cloned()
        .unwrap_or_else(|| settings.data_dir.join("tls").join(name))
}

/// The name this process's delivery claims carry: an id kept in the data directory, plus the
/// roles when the process runs only some. A restarted process has the same name and resumes
/// at once what it was delivering when it stopped; two processes must never share one (give
/// each instance its own `data_dir`).
fn instance_name(settings: &Settings, roles: Roles) -> anyhow::Result<String> {
    let path = settings.data_dir.join("instance-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let id = postern_domain::flow::notice::new_token();
            std::fs::write(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
            id
        }
    };
    if roles == Roles::ALL {
        return Ok(id);
    }
    let mut parts = vec![id];
    for (on, name) in [
        (roles.smtp, "smtp"),
        (roles.api, "api"),
        (roles.worker, "worker"),
    ] {
        if on {
            parts.push(name.to_string());
        }
    }
    Ok(parts.join("-"))
}
