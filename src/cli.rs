//! What each subcommand does, kept out of `main.rs`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, BuildMode};

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

/// `meetgate check`: validate only.
pub fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let env = crate::secret::process_env;
    match config::load_file(config_path, BuildMode::Check, &env) {
        Ok(snap) => {
            for w in &snap.warnings {
                match w.line {
                    Some(l) => println!("{}:{l}: warning: {w}", config_path.display()),
                    None => println!("{}: warning: {w}", config_path.display()),
                }
            }
            println!(
                "{}: OK ({} routes, {} identities, {} zoom apps, {} credentials, {} webhooks)",
                config_path.display(),
                snap.routes.len(),
                snap.identities.len(),
                snap.zoom_apps.len(),
                snap.credentials.len(),
                snap.webhooks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", e.report());
            Ok(ExitCode::FAILURE)
        }
    }
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
