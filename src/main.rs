//! The `wenhui` binary: a thin CLI over the library (see `wenhui --help`).

// Training allocates and frees large activation buffers every step; glibc hands those back to
// the kernel each time (page faults + zeroing). mimalloc keeps them for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    let cli = cli::Cli::parse_args();
    if !cli.is_server() {
        // A step frees and reallocates the same large buffers; by default mimalloc returns them to
        // the kernel after 10 ms and the next step faults and zeroes them again (≈5–8% of a CPU
        // training step). Commands that end keep them; the long-running server keeps the default.
        // SAFETY: mimalloc is this binary's global allocator; setting an option is thread-safe.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("WENHUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if cli.verbose { "debug" } else { "warn" }));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

mod cli;
