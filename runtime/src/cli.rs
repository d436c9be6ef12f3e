//! The command line: argument definitions and what each command does with the runtime.
//!
//! Rules every command follows: values are read from stdin or a no-echo prompt, never from
//! argv (where `ps` and shell history would show them); a value is printed only by
//! `credentials get-value --reveal`; errors go to stderr with the cause chain and exit
//! code 1 (usage errors: 2).

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use airlock::admin_tokens::{AdminTokens, Bootstrap, ENV_ADMIN_TOKEN};
use airlock::audit::{self, Actor, AuditEvent};
use airlock::catalog::{Credential, NewCredential, WriteOutcome};
use airlock::config::{Config, Overrides};
use airlock::jentic_import::{self, JenticSource};
use airlock::secret::{MAX_SECRET_BYTES, Secret};
use airlock::service::{self, Listener, Service};
use airlock::toolkit_keys::ToolkitKeys;
use airlock::{Runtime, logging};

/// airlock resolves credentials for agents and services from pluggable backends.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: ./airlock.toml when it exists; env AIRLOCK_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory holding airlock.db and vault.key (default: ./data; env
    /// AIRLOCK_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect and remove credentials and their values.
    #[command(subcommand, visible_alias = "cred")]
    Credentials(CredentialsCmd),
    /// Group credentials into toolkits.
    #[command(subcommand)]
    Toolkits(ToolkitsCmd),
    /// Manage the Fernet vault's keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Bring credentials in from another tool.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Inspect and check credential backends.
    #[command(subcommand)]
    Backends(BackendsCmd),
    /// Show the data directory, backends and catalog counts (creates ./data on first use).
    Status,
    /// Run the HTTP credential service (default: 127.0.0.1:8900, Fernet in ./data).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8900 (env AIRLOCK_LISTEN; default: the
        /// config's [server] listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Manage the service's admin token.
    #[command(subcommand)]
    AdminToken(AdminTokenCmd),
}

#[derive(Debug, Subcommand)]
enum AdminTokenCmd {
    /// Revoke every stored admin token and print a new one (once). Not needed when
    /// AIRLOCK_ADMIN_TOKEN is set: that one is used instead.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum CredentialsCmd {
    /// Add a credential's metadata (set its value with `set-value`).
    Add(AddArgs),
    /// List credentials (never values).
    List {
        /// Only credentials for this API.
        #[arg(long)]
        api_id: Option<String>,
        /// Only credentials visible to this toolkit.
        #[arg(long)]
        toolkit: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one credential's metadata (never its value).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a credential's value, read from stdin (one trailing newline is dropped) or,
    /// on a terminal, from a prompt that does not echo.
    SetValue { id: String },
    /// Resolve a credential's value through its backend; printed only with --reveal.
    GetValue {
        id: String,
        /// Print the value itself on stdout.
        #[arg(long)]
        reveal: bool,
    },
    /// Remove a credential (its Fernet value goes with it).
    Rm {
        id: String,
        /// Also delete the value in a non-Fernet backend (e.g. the upstream vault secret).
        #[arg(long)]
        delete_value: bool,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// Unique id; `/` and `.` allowed, no whitespace.
    #[arg(long)]
    id: String,
    #[arg(long)]
    label: String,
    /// The API it is for, e.g. api.github.com.
    #[arg(long)]
    api_id: Option<String>,
    /// bearer, basic, apiKey, oauth2, ...
    #[arg(long)]
    auth_type: String,
    /// Non-secret username or account (e.g. for basic auth).
    #[arg(long)]
    identity: Option<String>,
    /// Backend holding the value (default: the configured default backend).
    #[arg(long)]
    backend: Option<String>,
    /// Where the value lives in the backend, in its syntax.
    #[arg(long)]
    locator: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Extra broker-facing metadata as a JSON object.
    #[arg(long, value_name = "JSON")]
    attributes: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ToolkitsCmd {
    /// Create a toolkit.
    Add {
        #[arg(long)]
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List toolkits with their number of credentials.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Let a toolkit use a credential.
    Bind { toolkit: String, credential: String },
    /// Withdraw a toolkit's use of a credential.
    Unbind { toolkit: String, credential: String },
    /// Manage the keys agents use to resolve a toolkit's credentials over HTTP.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Issue a key for TOOLKIT and print it (once: only its hash is stored).
    Create {
        toolkit: String,
        /// Only clients in this network may use the key (CIDR or address; repeatable).
        #[arg(long = "allow-cidr", value_name = "CIDR")]
        allow_cidr: Vec<String>,
        /// A note on who or what uses the key.
        #[arg(long)]
        label: Option<String>,
        /// Print JSON (including the key) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves), optionally of one toolkit.
    List {
        toolkit: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id; requests with it get 401 from then on.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Add a fresh key (or, with keys in the environment, take the newest listed) and
    /// re-encrypt every value under it in one transaction.
    Rotate {
        /// Afterwards keep only the new key in the key file.
        #[arg(long)]
        drop_old: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackendsCmd {
    /// Every configured backend with what it was granted (outbound hosts, limits).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a component's imports and exports and whether airlock can host it (runs no
    /// guest code). Exits 1 if it cannot be hosted.
    Inspect { file: PathBuf },
    /// Instantiate a configured backend, run its `init` and `health`.
    Check { name: String },
}

#[derive(Debug, Subcommand)]
enum ImportCmd {
    /// Import credentials, toolkits and bindings from a Jentic Mini database.
    JenticMini {
        /// The Jentic Mini SQLite database.
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// Jentic's Fernet key file (default: $JENTIC_VAULT_KEY, else vault.key beside
        /// the database).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Backend to store the values in (default: the configured default backend).
        #[arg(long)]
        backend: Option<String>,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Run the parsed command; print any error with its causes.
pub fn run(cli: Cli) -> ExitCode {
    // The service logs its audit events at info; the other commands keep stderr quiet.
    logging::init(if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => code,
        Err(err) => {
            // Most errors already quote their cause; print a cause only when it adds text.
            let mut said = err.to_string();
            eprintln!("error: {said}");
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !said.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    said.push_str(&cause);
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load_config(cli: &Cli) -> Result<Config> {
    let overrides = Overrides {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
    };
    Ok(Config::load(&overrides, &env)?)
}

fn open_runtime(config: &Config) -> Result<Runtime> {
    Runtime::open(config, &env)
        .with_context(|| format!("opening airlock data in {}", config.data_dir.display()))
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Credentials(cmd) => credentials(&open_runtime(&config)?, cmd).await?,
        Command::Toolkits(cmd) => toolkits(&open_runtime(&config)?, cmd)?,
        Command::Keys(KeysCmd::Rotate { drop_old }) => {
            let rt = open_runtime(&config)?;
            let (report, source) = rt.rotate_keys(drop_old)?;
            println!(
                "re-encrypted {} value(s) under the newest key from {source}",
                report.values
            );
        }
        Command::Import(ImportCmd::JenticMini {
            db,
            key_file,
            backend,
            dry_run,
            json,
        }) => return import_jentic(&config, db, key_file, backend, dry_run, json).await,
        Command::Status => status(&open_runtime(&config)?).await?,
        Command::Backends(BackendsCmd::Inspect { file }) => return inspect_component(&file),
        Command::Backends(BackendsCmd::List { json }) => {
            list_backends(&open_runtime(&config)?, json)?
        }
        Command::Backends(BackendsCmd::Check { name }) => {
            return check_backend(&open_runtime(&config)?, &name).await;
        }
        Command::Serve { listen } => serve(config, listen).await?,
        Command::AdminToken(AdminTokenCmd::Rotate) => {
            let rt = open_runtime(&config)?;
            let token = AdminTokens::rotate(rt.database())?;
            cli_audit(&rt, "admin_token.rotate", None, None);
            if env(ENV_ADMIN_TOKEN).is_some_and(|v| !v.trim().is_empty()) {
                eprintln!(
                    "note: ${ENV_ADMIN_TOKEN} is set; a service started with it accepts only \
                     that token"
                );
            }
            println!("new admin token (shown only now; every earlier one is revoked):");
            println!("{}", token.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Record a write made from the command line in the audit log.
fn cli_audit(rt: &Runtime, action: &'static str, toolkit: Option<&str>, target: Option<&str>) {
    let mut event = AuditEvent::new(Actor::Cli, action);
    event.toolkit = toolkit.map(str::to_owned);
    event.target = target.map(str::to_owned);
    if let Err(e) = audit::write_now(rt.database(), &event) {
        eprintln!("warning: the audit event for {action} was not recorded: {e}");
    }
}

async fn serve(mut config: Config, listen: Option<SocketAddr>) -> Result<()> {
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let rt = open_runtime(&config)?;
    for name in config.backends.keys() {
        if rt.backend(name).is_err() {
            tracing::warn!(
                backend = %name,
                "configured backend is not loaded by this build (no sandbox); its credentials \
                 answer backend_misconfigured"
            );
        }
    }
    let env_token = env(ENV_ADMIN_TOKEN)
        .filter(|v| !v.trim().is_empty())
        .map(Secret::new)
        .transpose()
        .with_context(|| format!("${ENV_ADMIN_TOKEN} rejected"))?;
    let (admin, bootstrap) = AdminTokens::bootstrap(rt.database().clone(), env_token)?;
    let listener = Listener::bind(&config.server).await?;
    let service = Service::new(Arc::new(rt), config.server.clone(), admin)?;
    let shutdown = shutdown_signal()?;
    let mut out = std::io::stdout().lock();
    match bootstrap {
        Bootstrap::Generated(token) => {
            writeln!(
                out,
                "generated the admin token (shown only now; only its hash is stored; \
                 `airlock admin-token rotate` issues a new one):\n{}",
                token.expose()
            )?;
        }
        Bootstrap::FromEnv => tracing::info!("admin token from ${ENV_ADMIN_TOKEN}"),
        Bootstrap::Existing => tracing::info!("admin token: the one stored earlier"),
    }
    writeln!(out, "airlock listening on {}", listener.url())?;
    out.flush()?;
    drop(out);
    service::serve(service, listener, shutdown).await?;
    Ok(())
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed
/// here, before the future is first polled: a SIGTERM that arrives right after the service
/// announced its address must shut it down gracefully, not kill it.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

async fn credentials(rt: &Runtime, cmd: CredentialsCmd) -> Result<()> {
    match cmd {
        CredentialsCmd::Add(args) => {
            let attributes = match args.attributes.as_deref() {
                None => Map::new(),
                Some(text) => match serde_json::from_str(text) {
                    Ok(Value::Object(map)) => map,
                    Ok(_) => bail!("--attributes must be a JSON object"),
                    Err(e) => bail!("--attributes is not valid JSON: {e}"),
                },
            };
            let new = NewCredential {
                id: args.id,
                label: args.label,
                api_id: args.api_id,
                auth_type: args.auth_type,
                identity: args.identity,
                backend: args
                    .backend
                    .unwrap_or_else(|| rt.default_backend().to_owned()),
                locator: args.locator,
                description: args.description,
                attributes,
            };
            let cred = rt.add_credential(&new)?;
            println!(
                "added credential '{}' (backend {}); set its value with: airlock credentials \
                 set-value {}",
                cred.id,
                cred.backend,
                shell_word(&cred.id)
            );
        }
        CredentialsCmd::List {
            api_id,
            toolkit,
            json,
        } => {
            let creds = rt
                .catalog()
                .list_credentials(api_id.as_deref(), toolkit.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&creds)?);
            } else {
                print_credentials(&creds);
            }
        }
        CredentialsCmd::Show { id, json } => {
            let cred = rt.catalog().get_credential(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cred)?);
            } else {
                print_credential(&cred);
            }
        }
        CredentialsCmd::SetValue { id } => {
            // Fail on a wrong id before asking for a secret.
            let cred = rt.catalog().get_credential(&id)?;
            let value = read_value(&id)?;
            rt.store_value(&id, &value).await?;
            println!(
                "stored a {}-byte value for '{}' in backend {}",
                value.len(),
                id,
                cred.backend
            );
        }
        CredentialsCmd::GetValue { id, reveal } => {
            let value = rt.get_value(&id).await?;
            if reveal {
                let mut out = std::io::stdout().lock();
                out.write_all(value.expose().as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()?;
            } else {
                let backend = rt.catalog().get_credential(&id)?.backend;
                println!(
                    "'{id}' resolves to a {}-byte value from backend {backend}; pass --reveal \
                     to print it",
                    value.len()
                );
            }
        }
        CredentialsCmd::Rm { id, delete_value } => {
            let cred = rt.remove_credential(&id, delete_value).await?;
            println!(
                "removed credential '{}' (backend {})",
                cred.id, cred.backend
            );
        }
    }
    Ok(())
}

fn toolkits(rt: &Runtime, cmd: ToolkitsCmd) -> Result<()> {
    match cmd {
        ToolkitsCmd::Add {
            id,
            name,
            description,
        } => {
            let name = name.unwrap_or_else(|| id.clone());
            let tk = rt
                .catalog()
                .add_toolkit(&id, &name, description.as_deref())?;
            println!("added toolkit '{}'", tk.id);
        }
        ToolkitsCmd::List { json } => {
            let tks = rt.catalog().list_toolkits()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tks)?);
            } else {
                let rows: Vec<Vec<String>> = tks
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.credential_count.to_string(),
                            t.description.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "NAME", "CREDENTIALS", "DESCRIPTION"], &rows);
            }
        }
        ToolkitsCmd::Bind {
            toolkit,
            credential,
        } => {
            let outcome = rt.catalog().bind(&toolkit, &credential)?;
            let note = if outcome == WriteOutcome::Unchanged {
                " (already bound)"
            } else {
                ""
            };
            println!("toolkit '{toolkit}' may use '{credential}'{note}");
        }
        ToolkitsCmd::Unbind {
            toolkit,
            credential,
        } => {
            rt.catalog().unbind(&toolkit, &credential)?;
            println!("toolkit '{toolkit}' may no longer use '{credential}'");
        }
        ToolkitsCmd::Key(cmd) => keys(rt, cmd)?,
    }
    Ok(())
}

fn keys(rt: &Runtime, cmd: KeyCmd) -> Result<()> {
    let keys = ToolkitKeys::new(rt.database().clone());
    match cmd {
        KeyCmd::Create {
            toolkit,
            allow_cidr,
            label,
            json,
        } => {
            let created = keys.create(&toolkit, label.as_deref(), &allow_cidr)?;
            cli_audit(
                rt,
                "key.create",
                Some(&toolkit),
                Some(&format!("{toolkit}/{}", created.key.id)),
            );
            if json {
                let mut v = serde_json::to_value(&created.key)?;
                v["key"] = Value::String(created.secret.expose().to_owned());
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "created key {} for toolkit '{}' (shown only now; only its hash is stored):",
                    created.key.id, created.key.toolkit
                );
                println!("{}", created.secret.expose());
            }
        }
        KeyCmd::List { toolkit, json } => {
            let list = keys.list(toolkit.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.toolkit.clone(),
                            if k.is_revoked() { "revoked" } else { "active" }.to_owned(),
                            k.created_at.clone(),
                            if k.allowed_cidrs.is_empty() {
                                "any".to_owned()
                            } else {
                                k.allowed_cidrs
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            },
                            k.label.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "TOOLKIT", "STATE", "CREATED", "NETWORKS", "LABEL"],
                    &rows,
                );
            }
        }
        KeyCmd::Revoke { id } => {
            let (key, newly) = keys.revoke(&id)?;
            cli_audit(
                rt,
                "key.revoke",
                Some(&key.toolkit),
                Some(&format!("{}/{}", key.toolkit, key.id)),
            );
            if newly {
                println!("revoked key {} of toolkit '{}'", key.id, key.toolkit);
            } else {
                println!(
                    "key {} of toolkit '{}' was already revoked",
                    key.id, key.toolkit
                );
            }
        }
    }
    Ok(())
}

async fn import_jentic(
    config: &Config,
    db: PathBuf,
    key_file: Option<PathBuf>,
    backend: Option<String>,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let backend = backend.unwrap_or_else(|| config.default_backend.clone());
    let source = JenticSource::read(&db, &backend)?;
    let keyring = jentic_import::jentic_keyring(&db, key_file.as_deref(), &env)?;
    // A dry run against a data directory that does not exist yet must not create it.
    let exists = config
        .data_dir
        .join(airlock::database::DATABASE_FILE)
        .exists();
    let rt = if dry_run && !exists {
        None
    } else {
        Some(open_runtime(config)?)
    };
    let report = source.import(&keyring, rt.as_ref(), dry_run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if dry_run { "would import" } else { "imported" };
        let count = |o: WriteOutcome| {
            report
                .credentials
                .iter()
                .filter(|c| c.metadata == o || (o != WriteOutcome::Unchanged && c.value == o))
                .count()
        };
        println!(
            "{verb} from {}: {} credential(s) ({} new, {} updated, {} unchanged), {} \
             toolkit(s), {} binding(s)",
            source.path().display(),
            report.credentials.len(),
            count(WriteOutcome::Inserted),
            report
                .credentials
                .iter()
                .filter(|c| c.metadata != WriteOutcome::Inserted
                    && (c.metadata == WriteOutcome::Updated || c.value != WriteOutcome::Unchanged))
                .count(),
            report
                .credentials
                .iter()
                .filter(
                    |c| c.metadata == WriteOutcome::Unchanged && c.value == WriteOutcome::Unchanged
                )
                .count(),
            report.toolkits.len(),
            report.bindings.len()
        );
        for c in &report.credentials {
            println!("  {:<10} {}", outcome_word(c.metadata, c.value), c.id);
        }
        for note in &report.notes {
            println!("  note: {note}");
        }
    }
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.failed {
        eprintln!("error: credential '{}' not imported: {}", f.id, f.reason);
    }
    eprintln!(
        "error: {} credential(s) failed; the others were {}",
        report.failed.len(),
        if dry_run { "checked" } else { "imported" }
    );
    Ok(ExitCode::FAILURE)
}

fn outcome_word(metadata: WriteOutcome, value: WriteOutcome) -> &'static str {
    match (metadata, value) {
        (WriteOutcome::Inserted, _) => "new",
        (WriteOutcome::Unchanged, WriteOutcome::Unchanged) => "unchanged",
        _ => "updated",
    }
}

async fn status(rt: &Runtime) -> Result<()> {
    let creds = rt.catalog().list_credentials(None, None)?;
    let toolkits = rt.catalog().list_toolkits()?;
    println!("data directory: {}", rt.data_dir().display());
    println!("database:       {}", rt.database_path().display());
    println!("default backend: {}", rt.default_backend());
    println!("credentials:    {}", creds.len());
    println!("toolkits:       {}", toolkits.len());
    println!("backends:");
    for (name, backend) in rt.backends() {
        let health = match backend.health().await {
            Ok(detail) => format!("ok — {detail}"),
            Err(e) => format!("FAILING — {e}"),
        };
        println!("  {name} ({}): {health}", backend.kind());
    }
    Ok(())
}

fn list_backends(rt: &Runtime, json: bool) -> Result<()> {
    if json {
        let list: Vec<Value> = rt
            .backends()
            .map(|(name, b)| {
                serde_json::json!({
                    "name": name,
                    "kind": b.kind(),
                    "default": name == rt.default_backend(),
                    "grant": rt.grant(name),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for (name, backend) in rt.backends() {
        let default = if name == rt.default_backend() {
            " (default)"
        } else {
            ""
        };
        println!("{name}{default}: {}", backend.kind());
        let Some(g) = rt.grant(name) else {
            println!(
                "  values Fernet-encrypted in {}",
                rt.database_path().display()
            );
            continue;
        };
        println!(
            "  component:      {} (sha256 {})",
            g.component.display(),
            g.sha256
        );
        let hosts = if g.allowed_outbound.is_empty() {
            "none".to_owned()
        } else {
            g.allowed_outbound.join(", ")
        };
        println!("  outbound HTTP:  {hosts}");
        println!(
            "  private networks: {}",
            if g.allow_private_networks {
                "allowed"
            } else {
                "blocked unless named"
            }
        );
        for (dest, header) in &g.injected_headers {
            println!("  injects header: {header} for {dest}");
        }
        println!("  isolation:      {} (pool {})", g.isolation, g.pool_size);
        let l = &g.limits;
        println!(
            "  limits:         memory {} MiB, cpu {} ms, wall {} ms, connect {} ms, {} requests/call, \
             request {} B, response {} B, hostcall {} B",
            l.memory_mib,
            l.cpu_ms,
            l.timeout_ms,
            l.connect_timeout_ms,
            l.max_requests,
            l.max_request_bytes,
            l.max_response_bytes,
            l.max_hostcall_bytes
        );
        println!("  config keys:    {}", g.config_keys.join(", "));
    }
    Ok(())
}

fn inspect_component(file: &std::path::Path) -> Result<ExitCode> {
    let engine = airlock::sandbox::SandboxEngine::new(airlock::sandbox::EngineConfig::default())?;
    let report = airlock::sandbox::inspect(&engine, file)?;
    print!("{report}");
    Ok(if report.hostable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check_backend(rt: &Runtime, name: &str) -> Result<ExitCode> {
    let backend = rt.backend(name)?;
    backend
        .init()
        .await
        .with_context(|| format!("backend '{name}': init failed"))?;
    let health = backend
        .health()
        .await
        .with_context(|| format!("backend '{name}': health check failed"))?;
    println!("backend '{name}' ({}): ok — {health}", backend.kind());
    Ok(ExitCode::SUCCESS)
}

/// Read a value from stdin (piped) or a no-echo prompt (terminal).
fn read_value(id: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    let bytes = if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("value for '{id}': "))?;
        let second = zeroize::Zeroizing::new(rpassword::prompt_password("again: ")?);
        let first = zeroize::Zeroizing::new(first);
        if *first != *second {
            bail!("the two entries differ; nothing stored");
        }
        first.as_bytes().to_vec()
    } else {
        let mut buf = Vec::new();
        stdin
            .lock()
            .take(MAX_SECRET_BYTES as u64 + 3)
            .read_to_end(&mut buf)
            .context("reading the value from stdin")?;
        let mut buf = zeroize::Zeroizing::new(buf);
        // `echo VALUE |` appends a newline that is not part of the value.
        let len = buf.len();
        if buf.ends_with(b"\r\n") {
            buf.truncate(len - 2);
        } else if buf.ends_with(b"\n") {
            buf.truncate(len - 1);
        }
        std::mem::take(&mut *buf)
    };
    Secret::from_bytes(bytes).with_context(|| format!("value for '{id}' rejected; nothing stored"))
}

fn print_credentials(creds: &[Credential]) {
    let rows: Vec<Vec<String>> = creds
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.label.clone(),
                c.api_id.clone().unwrap_or_default(),
                c.auth_type.clone(),
                c.backend.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "LABEL", "API", "AUTH", "BACKEND"], &rows);
}

fn print_credential(c: &Credential) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id:          {}", c.id);
    println!("label:       {}", c.label);
    println!("api_id:      {}", opt(&c.api_id));
    println!("auth_type:   {}", c.auth_type);
    println!("identity:    {}", opt(&c.identity));
    println!("backend:     {}", c.backend);
    println!("locator:     {}", opt(&c.locator));
    println!("description: {}", opt(&c.description));
    println!(
        "attributes:  {}",
        serde_json::to_string(&c.attributes).unwrap_or_default()
    );
    println!("created_at:  {}", c.created_at);
    println!("updated_at:  {}", c.updated_at);
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Quote an id for a copy-pasteable shell command.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
