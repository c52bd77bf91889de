//! The `wenhui` binary: a thin CLI over the library (see `wenhui --help`).

// Training allocates and frees large activation buffers every step; glibc hands those back to
// the kernel each time (page faults + zeroing). mimalloc keeps them for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// candle's own CPU worker pool spins this many times after each op before sleeping.
const CANDLE_SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

fn main() {
    let cli = cli::Cli::parse_args();
    if cli.is_training() && std::env::var_os(CANDLE_SPIN_LIMIT).is_none() {
        // candle's CPU ops run on a worker pool of their own beside rayon's (which wenhui's
        // kernels use), one thread per core each. After every candle op its workers spin (25,000
        // times by default) before sleeping, taking the cores from the rayon threads running the
        // next fused op: on 2 cores a training step was 4–7% slower than with no spinning.
        // Generation, a chain of candle ops, keeps the spinning (its wake-ups are what it saves).
        // A value set by the user wins. Still single-threaded here; candle reads it when its
        // pool starts, later.
        std::env::set_var(CANDLE_SPIN_LIMIT, "0");
    }
    #[cfg(unix)]
    if !cli.is_server() && !cli.is_training() {
        // `wenhui inspect M --json | head`: when the reader goes away, end quietly as other Unix
        // tools do, instead of panicking in println! on the broken pipe (Rust ignores SIGPIPE).
        // Not for the server, whose closed connections must only end their own requests, nor for
        // training, which must not die with its log pipe (its progress writes ignore the error).
        // SAFETY: single-threaded still; restoring a signal's default disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if !cli.is_server() {
        // A step frees and reallocates the same large buffers; by default mimalloc returns them to
        // the kernel after 10 ms and the next step faults and zeroes them again (≈5–8% of a CPU
        // training step). Commands that end keep them; the long-running server keeps the default.
        // SAFETY: mimalloc is this binary's global allocator; setting an option is thread-safe.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("WENHUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if cli.verbose { "debug" } else { "warn" }));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let verbose = cli.verbose;
    if let Err(e) = cli::run(cli) {
        // The whole chain: the context ("evaluating `rte` on FILE") and what went wrong under it,
        // less the causes a message already quotes (an I/O error names its OS error itself).
        // candle appends a stack trace to its errors when RUST_BACKTRACE is set: kept with -v only.
        let text = |x: &dyn std::fmt::Display| {
            let s = x.to_string();
            match s.find("\n   0: ") {
                Some(i) if !verbose => s[..i].to_string(),
                _ => s,
            }
        };
        let mut msg = text(&e);
        for cause in e.chain().skip(1).map(|c| text(&c)) {
            if !msg.contains(&cause) {
                msg = format!("{msg}: {cause}");
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

mod cli;
