//! What each subcommand does, kept out of `main.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, BuildMode, ConfigError};

/// `meetgate run`: serve until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let gateway = match crate::start(config_path, crate::process_env()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!(
                "meetgate: cannot start with {}:\n{}",
                config_path.display(),
                e.report()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    crate::run(gateway).await?;
    Ok(ExitCode::SUCCESS)
}

/// How `check` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// `file:LINE: error: ...` lines: errors on stderr, warnings on stdout.
    Text,
    /// One JSON document on stdout (nothing on stderr).
    Json,
}

/// `meetgate check`'s options.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long, short, default_value = "config/meetgate.toml")]
    pub config: PathBuf,
    /// `text`, or `json`: one document with `ok`, `errors` and `warnings`
    /// (each with file, line, column, key, route, code and message).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Warnings fail the check too (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// Read no `${VAR}` variable, `file:` secret, TLS certificate or key:
    /// check the structure before the production secrets exist (the
    /// references' syntax is still checked).
    #[arg(long)]
    pub no_secrets: bool,
}

/// `meetgate check`: validate only. Exit 0 when the file would be
/// accepted (with warnings, unless `--strict`), 1 when it would be refused
/// (by `run` and by a reload, which keeps the running configuration).
pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let env = crate::secret::process_env;
    let path = &args.config;
    let (snapshot, errors, warnings) = match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = match args.no_secrets {
                true => BuildMode::CheckWithoutSecrets,
                false => BuildMode::Check,
            };
            let o = config::build_all(&text, path, mode, &env);
            (o.snapshot, o.errors, o.warnings)
        }
        Err(e) => {
            let read = ConfigError {
                line: None,
                column: None,
                key: String::new(),
                route: None,
                code: "unreadable_file",
                message: format!("cannot read {}: {e}", path.display()),
            };
            (None, vec![read], Vec::new())
        }
    };
    let ok = errors.is_empty() && (warnings.is_empty() || !args.strict);
    match args.format {
        CheckFormat::Json => {
            let problems = |list: &[ConfigError]| -> Vec<serde_json::Value> {
                list.iter()
                    .map(|p| {
                        serde_json::json!({
                            "file": path.display().to_string(),
                            "line": p.line,
                            "column": p.column,
                            "key": p.key,
                            "route": p.route,
                            "code": p.code,
                            "message": p.message,
                        })
                    })
                    .collect()
            };
            let doc = serde_json::json!({
                "file": path.display().to_string(),
                "ok": ok,
                "strict": args.strict,
                "secrets_read": !args.no_secrets,
                "errors": problems(&errors),
                "warnings": problems(&warnings),
                "summary": snapshot.as_ref().map(|s| serde_json::json!({
                    "routes": s.routes.len(),
                    "identities": s.identities.len(),
                    "zoom_apps": s.zoom_apps.len(),
                    "credentials": s.credentials.len(),
                    "webhooks": s.webhooks.len(),
                })),
            });
            println!("{doc:#}");
        }
        CheckFormat::Text => {
            let at = |p: &ConfigError| match p.line {
                Some(l) => format!("{}:{l}", path.display()),
                None => path.display().to_string(),
            };
            for w in &warnings {
                println!("{}: warning: {w}", at(w));
            }
            for e in &errors {
                eprintln!("{}: error: {e}", at(e));
            }
            if let Some(snap) = snapshot.as_ref().filter(|_| ok) {
                println!(
                    "{}: OK ({} routes, {} identities, {} zoom apps, {} credentials, {} webhooks)",
                    path.display(),
                    snap.routes.len(),
                    snap.identities.len(),
                    snap.zoom_apps.len(),
                    snap.credentials.len(),
                    snap.webhooks.len()
                );
            } else if errors.is_empty() {
                eprintln!(
                    "{}: refused by --strict: {} warning(s)",
                    path.display(),
                    warnings.len()
                );
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `meetgate demo`.
pub async fn demo(opts: crate::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    let setup = crate::demo::prepare(&opts).await?;
    let gateway = match crate::start(&setup.config_path, crate::process_env()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("meetgate demo: cannot start:\n{}", e.report());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("meetgate demo is running (Ctrl-C to stop).");
    println!(
        "  config (edit it: changes apply live): {}",
        setup.config_path.display()
    );
    println!(
        "  audit trail (one JSON line per decision): {}",
        setup.config_path.with_file_name("audit.log").display()
    );
    println!("  echo upstream: http://{}", setup.upstream);
    println!(
        "  development issuer: http://{} (tokens: /token?sub=..&roles=a,b&tenant=..)",
        setup.issuer
    );
    println!();
    let examples = crate::demo::examples(
        &setup.ca_path,
        gateway.tls_addr,
        gateway.admin_addr,
        setup.issuer,
    );
    for ex in examples {
        println!("# {} (expect {})", ex.what, ex.expect);
        println!("{}", ex.command);
        println!();
    }
    crate::run(gateway).await?;
    Ok(ExitCode::SUCCESS)
}

/// `meetgate dev-certs`.
pub fn dev_certs(out: &Path) -> anyhow::Result<ExitCode> {
    let certs = crate::tls::generate_dev_certs(&["localhost", "127.0.0.1", "::1"])?;
    let (ca, cert, key) = certs.write_to(out)?;
    println!(
        "wrote {} (trust this in clients), {} and {}",
        ca.display(),
        cert.display(),
        key.display()
    );
    println!("development only: the CA key is not kept, so these cannot be extended.");
    Ok(ExitCode::SUCCESS)
}
