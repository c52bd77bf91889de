//! The `wenhui` binary: a thin CLI over the library (see `wenhui --help`).

// Training allocates and frees large activation buffers every step; glibc hands those back to
// the kernel each time (page faults + zeroing). mimalloc keeps them for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse_args();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WENHUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if cli.verbose { "debug" } else { "warn" }));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

mod cli;
