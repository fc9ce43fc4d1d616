//! The command line: `serve`, `migrate`, `token`, `user create`, `key create`.
//!
//! Commands that print a value (`token`, `user create`) print only that value on
//! stdout, so scripts can capture it; everything else goes to stderr.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Config, DatabaseConfig, LogFormat};
use crate::domain::{Role, UserId};
use crate::{store, telemetry};

/// `locallife --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LOCALLIFE_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "locallife",
    version = VERSION,
    about = "LocalLife realtime: notifications and API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP and WebSocket until SIGTERM.
    Serve {
        /// Overrides LISTEN_ADDR.
        #[arg(long)]
        listen_addr: Option<std::net::SocketAddr>,
        /// Overrides METRICS_ADDR.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Apply pending migrations and exit (safe when several replicas run it at once).
    Migrate,
    /// Mint an access token for an existing user and print only the token.
    Token {
        #[arg(long)]
        user_id: i64,
        /// Lifetime, like 30m or 2h (default ACCESS_TOKEN_TTL).
        #[arg(long, value_parser = config::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check the configuration: print the effective settings (secrets masked) and warn
    /// about variables that look like settings but are none (a typo such as
    /// `WS_INTERVALL`). Exits non-zero when the configuration is invalid.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage service keys, the credentials of back-office services (SPEC §10).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Migrate, seed a small world, print tokens and commands to try it, then serve.
    Demo,
    /// Connect to /v1/ws as a user and print every message (acking notifications).
    Listen {
        /// ws://host:port/v1/ws (or wss://).
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        /// Exit after this many notifications.
        #[arg(long)]
        count: Option<usize>,
        /// Do not ack notifications (they will be redelivered).
        #[arg(long)]
        no_ack: bool,
    },
    /// Send a signed WeChat Pay payment notification for an order (demo key files).
    SimulatePayment {
        /// The service's base URL, http://host:port.
        #[arg(long)]
        url: String,
        /// The folder `locallife demo` printed, holding WeChat Pay's demo keys.
        #[arg(long)]
        keys: std::path::PathBuf,
        /// The JSON that POST /v1/orders answered.
        #[arg(long)]
        order: String,
    },
    /// Print the OpenAPI 3.1 description of the HTTP API (as `GET /openapi.json`
    /// serves it), or write it to a file.
    Openapi {
        /// Write here instead of printing (the repository keeps `docs/openapi.json`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with a role (or grant the role to the user with that openid) and
    /// print only the user's id.
    Create {
        #[arg(long)]
        openid: String,
        #[arg(long)]
        role: Role,
    },
    /// Remove a role from a user; their open sockets admitted through it lose it within
    /// seconds (through Redis), or at the next admission re-check without Redis.
    Revoke {
        #[arg(long)]
        user_id: i64,
        #[arg(long)]
        role: Role,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective settings and warn about unknown ones.
    Check,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a key and print only the key (`llk_<id>_<secret>`), shown this once.
    Create {
        /// What it is for (shown in receipts as the sender).
        #[arg(long)]
        name: String,
        /// notify, read or admin; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<crate::domain::Scope>,
        /// Lifetime, like 90d or 12h (default: until revoked).
        #[arg(long, value_parser = config::parse_duration)]
        expires: Option<Duration>,
    },
    /// List every key: id, name, scopes, created, expires, last used, revoked.
    List,
    /// Revoke a key: refused on every replica within 5 s.
    Revoke {
        #[arg(long)]
        id: i64,
    },
}

impl clap::ValueEnum for crate::domain::Scope {
    fn value_variants<'a>() -> &'a [Self] {
        &crate::domain::Scope::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &Role::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the configuration error names its variable; other errors carry
            // their context chain.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            listen_addr,
            metrics_addr,
        } => {
            let mut config = Config::from_env()?;
            if let Some(addr) = listen_addr {
                config.listen_addr = addr;
            }
            if let Some(addr) = metrics_addr {
                config.metrics_addr = addr;
            }
            telemetry::init(config.log_format);
            let shutdown = shutdown_signal();
            let app = Application::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "serving");
            app.run_until_stopped(shutdown).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Openapi { out } => {
            let text = crate::http::openapi::to_json(&crate::http::openapi());
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Migrate => {
            let db = DatabaseConfig::from_env()?;
            telemetry::init(log_format_from_env());
            let applied = store::migrate::run(&db).await?;
            eprintln!("migrations applied: {}", applied.len());
            Ok(())
        }
        Command::Token { user_id, ttl } => {
            let config = Config::from_env()?;
            telemetry::init(config.log_format);
            let db = store::connect_pool(&config.database)?;
            let user = UserId(user_id);
            // The user's current token epoch: a token of an earlier one is refused.
            let Some(epoch) = store::users::token_epoch(&db, user)
                .await
                .context("cannot look up the user")?
            else {
                anyhow::bail!("no user with id {user_id}");
            };
            let tokens = crate::auth::Tokens::new(&config.jwt);
            let ttl = ttl.unwrap_or(tokens.ttl());
            if ttl > crate::config::MAX_TTL {
                anyhow::bail!("--ttl is at most 24h");
            }
            let minted = tokens.mint_with_ttl(crate::auth::jwt::Subject { user, epoch }, ttl);
            println!("{}", minted.token);
            Ok(())
        }
        Command::Demo => {
            let config = Config::from_env()?;
            telemetry::init(config.log_format);
            crate::demo::run(config, shutdown_signal()).await
        }
        Command::Listen {
            url,
            token,
            count,
            no_ack,
        } => crate::client::listen(&url, &token, count, no_ack).await,
        Command::SimulatePayment { url, keys, order } => {
            crate::client::simulate_payment(&url, &keys, &order).await
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let unknown = config::unknown_settings(std::env::vars().map(|(k, _)| k));
            for name in &unknown {
                eprintln!(
                    "warning: {name} is not a setting of this service (a typo?); it is ignored"
                );
            }
            let config = Config::from_env()?;
            println!("{config:#?}");
            eprintln!(
                "configuration valid{}",
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!("; {} unknown variable(s) ignored", unknown.len())
                }
            );
            Ok(())
        }
        Command::Key { command } => {
            let db_config = DatabaseConfig::from_env()?;
            telemetry::init(log_format_from_env());
            store::migrate::run(&db_config).await?;
            let db = store::connect_pool(&db_config)?;
            key_command(&db, command).await
        }
        Command::User {
            command: UserCommand::Create { openid, role },
        } => {
            let db_config = DatabaseConfig::from_env()?;
            telemetry::init(log_format_from_env());
            let openid = openid.trim();
            if openid.is_empty() {
                anyhow::bail!("--openid must not be empty");
            }
            store::migrate::run(&db_config).await?;
            let db = store::connect_pool(&db_config)?;
            let id = store::users::ensure_with_role(&db, openid, role)
                .await
                .context("cannot create the user")?;
            println!("{id}");
            Ok(())
        }
        Command::User {
            command: UserCommand::Revoke { user_id, role },
        } => {
            let config = Config::from_env()?;
            telemetry::init(config.log_format);
            let db = store::connect_pool(&config.database)?;
            let user = UserId(user_id);
            if !store::users::revoke_role(&db, user, role)
                .await
                .context("cannot revoke the role")?
            {
                anyhow::bail!("user {user_id} does not have the {role} role");
            }
            match &config.redis {
                Some(redis) => {
                    let tasks = crate::tasks::Tasks::new();
                    let keys = crate::engine::keys::Keys::new(&config.redis_key_prefix);
                    let engine =
                        crate::engine::redis::RedisEngine::connect(redis, keys, &tasks).await?;
                    crate::notify::revoke_role(&engine, user, role)
                        .await
                        .context("revoked; the open sockets lose the role at the next re-check")?;
                    tasks.shutdown(std::time::Duration::from_secs(2)).await;
                }
                None => eprintln!(
                    "revoked; without REDIS_URL the open sockets lose the role at the next \
                     admission re-check (WS_ADMISSION_RECHECK)"
                ),
            }
            Ok(())
        }
    }
}

/// `locallife key …`: what is printed on stdout is the key (create) or the list.
async fn key_command(db: &deadpool_postgres::Pool, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            name,
            scopes,
            expires,
        } => {
            let made = crate::service::keys::create(db, &name, &scopes, expires, None)
                .await
                .context("cannot make the key")?;
            eprintln!(
                "key {} ({}) made; it is shown only now:",
                made.info.id, made.info.name
            );
            println!("{}", made.key);
        }
        KeyCommand::List => {
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_owned(), |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
            };
            println!("id\tname\tscopes\tcreated\texpires\tlast used\trevoked");
            for k in crate::store::keys::list(db)
                .await
                .context("cannot list the keys")?
            {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    scopes.join(","),
                    when(Some(k.created_at)),
                    when(k.expires_at),
                    when(k.last_used_at),
                    when(k.revoked_at),
                );
            }
        }
        KeyCommand::Revoke { id } => {
            // A replica trusts what it read of a key for at most 2 s.
            if !crate::store::keys::revoke(db, id)
                .await
                .context("cannot revoke the key")?
            {
                anyhow::bail!("no key with id {id}");
            }
            eprintln!("key {id} revoked: refused on every replica within 5 s");
        }
    }
    Ok(())
}

/// Commands that do not need the whole configuration still honour `LOG_FORMAT`.
fn log_format_from_env() -> LogFormat {
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Pretty,
    }
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C. The handlers are installed when this
/// is called, not when the future is first polled: a SIGTERM that arrives while the
/// replica is still starting (or just after `/readyz` said 200, before the server task
/// got round to waiting) drains it instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
