//! `volery shell`: a zkCli.sh look-alike built on [`crate::client`].
//!
//! Three modes, as `ZooKeeperMain` has them:
//! - a command on the command line (`volery shell -server 127.0.0.1:2181 ls /`): run it, exit with
//!   its exit code (0, 1 for a failed command, 127 for an unknown one);
//! - standard input a terminal: line editing and history (rustyline), zkCli's prompt;
//! - standard input not a terminal: one command per line, exit code of the last one.
//!
//! zkCli spells its options with one dash (`-server`, `-timeout`); clap does not, so
//! [`normalize_args`] rewrites them to `--server`/`--timeout` before clap sees the argument list.
mod commands;
pub mod format;
pub mod parse;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::client::{ClientOptions, State, WatchedEvent, DEFAULT_SESSION_TIMEOUT_MS};
pub use commands::{usage, Flow, Output, Shell, Stream, COMMANDS};

/// `volery shell [-server host:port[,host:port...]] [-timeout ms] [-r] [command args...]`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShellArgs {
    /// Servers to connect to, `host:port[,host:port...]` (zkCli's `-server`; `-server` with one
    /// dash is accepted).
    #[arg(long, default_value = "localhost:2181")]
    pub server: String,
    /// Session timeout in milliseconds (zkCli's `-timeout`).
    #[arg(long, default_value_t = DEFAULT_SESSION_TIMEOUT_MS)]
    pub timeout: i32,
    /// Accept a read-only server (zkCli's `-r`).
    #[arg(short = 'r')]
    pub read_only: bool,
    /// Wait for the session to be connected before running anything (zkCli's
    /// `-waitforconnection`).
    #[arg(long)]
    pub waitforconnection: bool,
    /// A command and its arguments to run instead of reading commands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Why the shell could not run at all (a failed command is an exit code, not an error).
#[derive(Debug, Error)]
pub enum ShellError {
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("line editor: {0}")]
    Editor(String),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}

/// zkCli's single-dash options, as clap needs them.
const SINGLE_DASH_LONG: &[&str] = &["-server", "-timeout", "-waitforconnection"];

/// Rewrites `volery shell -server h ...` to `volery shell --server h ...`: only when the first
/// argument after the program is `shell`, and only before the first word of the command to run.
pub fn normalize_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).and_then(|a| a.to_str()) != Some("shell") {
        return args;
    }
    let mut i = 2;
    while i < args.len() {
        let Some(a) = args[i].to_str().map(str::to_owned) else {
            break;
        };
        let a = a.as_str();
        if SINGLE_DASH_LONG.contains(&a) {
            args[i] = format!("-{a}").into();
            i += if a == "-waitforconnection" { 1 } else { 2 };
        } else if a.starts_with('-') {
            i += if a == "--server" || a == "--timeout" {
                2
            } else {
                1
            };
        } else {
            break;
        }
    }
    args
}

/// Runs the shell; returns the process exit code zkCli would have.
pub fn run(args: ShellArgs) -> Result<i32, ShellError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let code = runtime.block_on(run_async(args))?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

/// Where lines come from.
enum Input {
    /// Words from the command line: run once.
    Words(Vec<String>),
    /// Lines from a non-terminal standard input.
    Piped(mpsc::UnboundedReceiver<String>),
    /// A terminal: ask the editor thread for a line with a prompt, get the line back.
    Editor {
        prompts: std::sync::mpsc::Sender<String>,
        lines: mpsc::UnboundedReceiver<Option<String>>,
    },
}

async fn run_async(args: ShellArgs) -> Result<i32, ShellError> {
    let mut base = ClientOptions::from_connect_string(&args.server)?;
    base.session_timeout_ms = args.timeout;
    base.read_only = args.read_only;
    let (ev_tx, mut events) = mpsc::unbounded_channel::<WatchedEvent>();
    let mut shell = Shell::new(base, ev_tx);
    let print_watches = shell.print_watches.clone();

    println!("Connecting to {}", args.server);
    if let Err(e) = shell.connect_to(&args.server).await {
        eprintln!("{e}");
        return Ok(1);
    }
    if args.waitforconnection {
        wait_connected(&shell, Duration::from_millis(args.timeout.max(0) as u64)).await;
    }

    let mut input = if !args.command.is_empty() {
        Input::Words(args.command.clone())
    } else {
        println!("Welcome to ZooKeeper!");
        if std::io::stdin().is_terminal() {
            println!("JLine support is enabled");
            // The first prompt shows the session connected unless the server is slow to answer.
            wait_connected(&shell, Duration::from_secs(3)).await;
            start_editor()?
        } else {
            println!("JLine support is disabled");
            start_stdin_reader()
        }
    };
    let _ = std::io::stdout().flush();

    // Printed straight to stdout, also while the editor shows its prompt: zkCli's JLine does the
    // same (the event lands after the prompt; the line being typed is not redrawn). rustyline's
    // ExternalPrinter would redraw it, but in rustyline 15 and 17 it stalls keyboard input.
    let print_event = |ev: &WatchedEvent| {
        if print_watches.load(Ordering::Relaxed) {
            print!("\nWATCHER::\n\n{ev}\n");
            let _ = std::io::stdout().flush();
        }
    };

    loop {
        // Wait for the next line, printing events meanwhile.
        let line: Option<Vec<String>> = match &mut input {
            Input::Words(words) => {
                if words.is_empty() {
                    None
                } else {
                    Some(std::mem::take(words))
                }
            }
            Input::Piped(lines) => loop {
                tokio::select! {
                    l = lines.recv() => break l.map(|l| vec![l]),
                    Some(ev) = events.recv() => print_event(&ev),
                }
            },
            Input::Editor { prompts, lines } => {
                if prompts.send(shell.prompt()).is_err() {
                    break;
                }
                loop {
                    tokio::select! {
                        l = lines.recv() => break l.flatten().map(|l| vec![l]),
                        Some(ev) = events.recv() => print_event(&ev),
                    }
                }
            }
        };
        let Some(line) = line else { break };
        let is_words = matches!(input, Input::Words(_));
        let fut = async {
            if is_words {
                shell.execute_words(line).await
            } else {
                shell.execute_line(&line[0]).await
            }
        };
        tokio::pin!(fut);
        let (output, flow) = loop {
            tokio::select! {
                biased;
                r = &mut fut => break r,
                Some(ev) = events.recv() => print_event(&ev),
            }
        };
        // Events the server sent before the reply come before the command's output.
        while let Ok(ev) = events.try_recv() {
            print_event(&ev);
        }
        print_output(&output);
        if flow == Flow::Quit || is_words {
            while let Ok(ev) = events.try_recv() {
                print_event(&ev);
            }
            break;
        }
    }
    let code = shell.exit_code;
    // End of input: close the session quietly (zkCli leaves it to expire).
    print_watches.store(false, Ordering::Relaxed);
    if let Some(c) = &shell.client {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
    Ok(code)
}

async fn wait_connected(shell: &Shell, wait: Duration) {
    let Some(c) = &shell.client else { return };
    let deadline = tokio::time::Instant::now() + wait;
    while c.state() == State::Connecting && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn print_output(output: &Output) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for (stream, text) in &output.parts {
        match stream {
            Stream::Out => {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Stream::Err => {
                let _ = err.write_all(text.as_bytes());
                let _ = err.flush();
            }
        }
    }
}

fn start_stdin_reader() -> Input {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Input::Piped(rx)
}

fn start_editor() -> Result<Input, ShellError> {
    use rustyline::error::ReadlineError;
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| ShellError::Editor(e.to_string()))?;
    let (prompt_tx, prompt_rx) = std::sync::mpsc::channel::<String>();
    let (line_tx, line_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(prompt) = prompt_rx.recv() {
            let line = match editor.readline(&prompt) {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = editor.add_history_entry(l.as_str());
                    }
                    Some(l)
                }
                // Ctrl-C and Ctrl-D end the shell, as they end zkCli's JVM.
                Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => None,
                Err(e) => {
                    eprintln!("{e}");
                    None
                }
            };
            let end = line.is_none();
            if line_tx.send(line).is_err() || end {
                break;
            }
        }
    });
    Ok(Input::Editor {
        prompts: prompt_tx,
        lines: line_rx,
    })
}
