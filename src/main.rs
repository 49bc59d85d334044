//! The `meetgate` command: `run`, `check`, `demo`, `dev-certs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meetgate",
    version,
    about = "Authentication gateway for apps built on Zoom and Vonage/OpenTok"
)]
struct Cli {
    /// Log format (default: json when stderr is not a terminal, else text).
    /// Anything else is refused, so a typo cannot silently change the format.
    #[arg(
        long,
        global = true,
        env = "MEETGATE_LOG_FORMAT",
        value_enum,
        ignore_case = true
    )]
    log_format: Option<meetgate::telemetry::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file (reloaded on change and on SIGHUP).
    Run {
        #[arg(long, short, default_value = "config/meetgate.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 (warnings allowed unless
    /// --strict), or 1 listing every problem.
    Check(meetgate::cli::CheckArgs),
    /// Run a self-contained demo: dev certificates, an echo upstream, curl lines.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
        /// Where certificates and the demo config are written.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("meetgate-demo"))]
        dir: PathBuf,
    },
    /// Write a development CA and gateway certificate (never for production).
    DevCerts {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

/// jemalloc: memory freed after a burst (connections going idle are
/// parked and give their buffers back, `src/server/h1.rs`) returns to the
/// OS from a background thread within seconds; glibc's malloc keeps the
/// burst's high-water mark resident.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    meetgate::telemetry::init_logging(cli.log_format);
    // Purge freed pages on jemalloc's decay schedule even while no thread
    // allocates (an idle gateway would otherwise never purge).
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start the allocator's background purging");
    }
    // A gateway holds two descriptors per proxied connection: use the hard
    // limit, as nginx's worker_rlimit_nofile would.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let rt = match meetgate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meetgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP ends a process by default: take it over before the listeners
    // are announced, so a reload signal sent right after start cannot kill
    // the gateway (`run` acts on SIGHUP once serving).
    if matches!(cli.command, Command::Run { .. } | Command::Demo { .. }) {
        use tokio::signal::unix::{signal, SignalKind};
        if let Err(e) = rt.block_on(async { signal(SignalKind::hangup()) }) {
            tracing::warn!(error = %e, "cannot take over SIGHUP");
        }
    }
    let result = match cli.command {
        Command::Run { config } => rt.block_on(meetgate::cli::run(&config)),
        Command::Check(args) => meetgate::cli::check(&args),
        Command::Demo {
            listen,
            admin_listen,
            dir,
        } => rt.block_on(meetgate::cli::demo(meetgate::demo::DemoOptions {
            listen,
            admin_listen,
            dir,
        })),
        Command::DevCerts { out } => meetgate::cli::dev_certs(&out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meetgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
